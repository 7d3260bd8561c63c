"""Paired comparisons of evaluated models, and the results dict the report renders.

Every comparison is after/before on the same items: retention of MMLU (accuracy and the
correct option's probability), perplexity ratios, and Q&A score ratios. Per-sample metrics
get a paired bootstrap interval; sacrebleu's corpus BLEU gets the point ratio only.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from soaes.eval.metrics import METRIC_NAMES, paired_bootstrap_ratio
from soaes.eval.retention import mmlu_retention, ppl_ratio

log = logging.getLogger(__name__)


def retention_block(
    before: dict, after: dict, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict:
    """MMLU and perplexity of ``after`` relative to ``before`` (model result dicts)."""
    out: dict[str, Any] = {}
    if before.get("mmlu") and after.get("mmlu"):
        b, a = before["mmlu"]["per_item"], after["mmlu"]["per_item"]
        out["mmlu_accuracy"] = mmlu_retention(b, a, n_boot, seed, ci, metric="correct")
        out["mmlu_p_correct"] = mmlu_retention(b, a, n_boot, seed, ci, metric="p_correct")
    out["perplexity"] = {
        name: {
            "group": s["group"],
            **ppl_ratio(s["per_item"], after["perplexity"][name]["per_item"], n_boot, seed, ci),
        }
        for name, s in (before.get("perplexity") or {}).items()
        if name in (after.get("perplexity") or {})
    }
    return out


def qa_ratio_block(
    before: dict, after: dict, qa_set: str, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict | None:
    """Q&A scores of ``after`` over ``before`` on one set, both conventions.

    ``jieba`` (per-sample means) ratios carry a paired bootstrap interval over items;
    ``sacrebleu`` ROUGE too, its corpus BLEU-4 the point ratio only.
    """
    qb, qa = (before.get("qa") or {}).get(qa_set), (after.get("qa") or {}).get(qa_set)
    if not qb or not qa:
        return None
    out: dict[str, Any] = {"qa_set": qa_set, "n": qb["n_items"]}
    for conv in ("jieba", "sacrebleu"):
        out[conv] = {}
        for m in METRIC_NAMES:
            if conv == "sacrebleu" and m == "bleu-4":
                x, y = qb[conv][m], qa[conv][m]
                out[conv][m] = {"before": x, "after": y, "ratio": y / x if x else float("nan")}
                continue
            out[conv][m] = paired_bootstrap_ratio(
                [s[conv][m] for s in qb["per_item"]],
                [s[conv][m] for s in qa["per_item"]],
                n_boot=n_boot,
                seed=seed,
                ci=ci,
            )
    return out


def _pair(per_model: dict, before: str | None, after: str | None) -> tuple[dict, dict] | None:
    if before and after and before in per_model and after in per_model:
        return per_model[before], per_model[after]
    return None


def build_results(cfg, per_model: dict[str, dict]) -> dict:
    """The report's results dict (schema in :mod:`soaes.eval.report`) from an eval run."""
    from soaes.eval.report import read_loss_curves
    from soaes.eval.runner import strip_per_item

    r, roles = cfg.retention, cfg.roles
    kw = {"n_boot": r.n_boot, "seed": r.seed, "ci": r.ci}
    baseline = r.baseline or cfg.models[0].name
    results: dict[str, Any] = {
        "title": cfg.report.title or f"soaes evaluation: {cfg.name}",
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "models": {k: strip_per_item(v) for k, v in per_model.items()},
        "retention": {
            "baseline": baseline,
            "models": {
                k: retention_block(per_model[baseline], v, **kw)
                for k, v in per_model.items()
                if k != baseline
            },
        },
    }
    qa_set = roles.qa_set or (cfg.qa[0].name if cfg.qa else None)
    cpt: dict[str, Any] = {}
    if pair := _pair(per_model, roles.cpt_before, roles.cpt_after):
        cpt.update(
            {"before": roles.cpt_before, "after": roles.cpt_after, **retention_block(*pair, **kw)}
        )
    if (pair := _pair(per_model, roles.base_sft, roles.cpt_sft)) and qa_set:
        cpt["downstream"] = {
            "before": roles.base_sft,
            "after": roles.cpt_sft,
            **(qa_ratio_block(*pair, qa_set, **kw) or {}),
        }
    if cpt:
        results["cpt"] = cpt
    if (pair := _pair(per_model, roles.single_stage, roles.progressive)) and qa_set:
        block = qa_ratio_block(*pair, qa_set, **kw)
        if block:
            results["progressive"] = {
                "before": roles.single_stage,
                "after": roles.progressive,
                **block,
            }
    rep = cfg.report
    if spec := _read_json(rep.speculative):
        results["speculative"] = {"distilled": spec}
        if undistilled := _read_json(rep.speculative_undistilled):
            results["speculative"]["undistilled"] = undistilled
    if serving := _read_json(rep.serving):
        results["serving"] = serving
    if rep.loss_curves:
        results["loss_curves"] = read_loss_curves(rep.loss_curves)
    return results


def _read_json(path: str | None) -> dict | None:
    """A report input, or None (logged) when it is not configured or not there."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        log.warning("report input %s not found: that section renders as 'not run'", path)
        return None
    return json.loads(p.read_text(encoding="utf-8"))
