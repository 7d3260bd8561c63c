"""The report: ``report.md``, ``report.html`` (one self-contained file) and ``report.json``.

:func:`write_report` takes a plain results dict. Every key is optional; a section whose
data is missing renders as "not run". ``RATIO`` below is ``{before, after, ratio}`` plus,
when a paired bootstrap was run, ``{low, high, n, ci}``.

.. code-block:: text

    title: str;  created: str;  profile: str
    models: {NAME: {path, seconds,
             qa: {SET: {source, n_items, n_malformed,
                        jieba|sacrebleu: {rouge-1, rouge-2, rouge-l, bleu-4}}},   # 0-100
             mmlu: {n, accuracy, p_correct, scoring} | null,
             perplexity: {SET: {group: domain|general, ppl, n_docs, n_tokens}}}}
    retention: {baseline: NAME, models: {NAME: {mmlu_accuracy: RATIO, mmlu_p_correct: RATIO,
                                                perplexity: {SET: {group, **RATIO}}}}}
    cpt: {before: NAME, after: NAME, mmlu_accuracy: RATIO, mmlu_p_correct: RATIO,
          perplexity: {SET: {group, **RATIO}},
          downstream: {before: NAME (base+SFT), after: NAME (CPT+SFT), qa_set, n,
                       jieba|sacrebleu: {METRIC: RATIO}}}
    progressive: {before: NAME (single-stage), after: NAME (progressive), qa_set, n,
                  jieba|sacrebleu: {METRIC: RATIO}}
    speculative: {distilled: ACC, undistilled: ACC}     # undistilled optional
        ACC = soaes.eval.acceptance.measure_acceptance's summary or spec_decode.json:
              {best_k | num_speculative_tokens, c, rows: [{k, acceptance_rate,
               mean_acceptance_length, per_position: [...], speedup_measured,
               speedup_theoretical, outputs_identical}]}
    loss_curves: {LABEL: {SERIES: [[step, value], ...]}}   # see read_loss_curves

The eval pipeline fills models/retention/cpt/progressive (from ``roles``) and reads
speculative/loss_curves from the files named in its ``report`` block.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from soaes.eval.render import render_html, render_markdown

log = logging.getLogger(__name__)

# SOAEsV2 (arXiv 2505.04723), the figures our results are set beside.
PAPER = {
    "general_retention": 0.998,
    "cpt_downstream": {"rouge-1": 1.08, "bleu-4": 1.17},
    "progressive": {"rouge-1": 1.02, "bleu-4": 1.06},
    "speculative_speedup": [1.39, 1.52],
    "speculative_outputs_identical": True,
}
NOT_RUN = "*Not run: no results for this section.*"
_X_KEYS = ("step", "global_step", "iteration", "iter")


def fmt_num(v: Any, nd: int = 2) -> str:
    return f"{v:.{nd}f}" if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def fmt_ratio(d: dict | None, pct: bool = False) -> str:
    """``1.08x [0.95, 1.20]`` (or ``97.3% [90.1, 104.2]``); ``not run`` for None.

    A ratio over a zero baseline is ``n/a``.
    """
    if not d or not isinstance(d.get("ratio"), int | float):
        return "not run"
    if not math.isfinite(d["ratio"]):
        return "n/a (baseline is 0)"
    scale, unit, nd = (100, "%", 1) if pct else (1, "x", 2)
    s = f"{fmt_num(d['ratio'] * scale, nd)}{unit}"
    if isinstance(d.get("low"), int | float) and math.isfinite(d["low"]):
        s += f" [{fmt_num(d['low'] * scale, nd)}, {fmt_num(d['high'] * scale, nd)}]"
    return s


def _gain_verdict(d: dict | None) -> str:
    if not d or not isinstance(d.get("ratio"), int | float):
        return "not run"
    if not math.isfinite(d["ratio"]):
        return "n/a"
    if isinstance(d.get("low"), int | float) and d["low"] > 1:
        return "gain (CI above 1)"
    return "gain, within noise" if d["ratio"] > 1 else "no gain"


def best_row(acc: dict | None) -> dict | None:
    if not acc or not acc.get("rows"):
        return None
    k = acc.get("best_k", acc.get("num_speculative_tokens"))
    return next((r for r in acc["rows"] if r.get("k") == k), acc["rows"][0])


def headline(results: dict) -> list[dict]:
    """The paper's claims beside ours: ``[{claim, paper, ours, verdict, value}]``."""
    cpt, prog = results.get("cpt") or {}, results.get("progressive") or {}
    ret = cpt.get("mmlu_accuracy")
    rows = []
    if ret and isinstance(ret.get("low"), int | float) and math.isfinite(ret["low"]):
        inside = ret["low"] <= PAPER["general_retention"] <= ret["high"]
        verdict = (
            "consistent (paper value in our CI)"
            if inside
            else ("lower" if ret["high"] < PAPER["general_retention"] else "higher")
        )
    else:
        verdict = "not run" if not ret else "n/a"
    rows.append(
        {
            "claim": "General ability kept after CPT (MMLU accuracy after/before)",
            "paper": "99.8%",
            "ours": fmt_ratio(ret, pct=True),
            "verdict": verdict,
            "value": ret.get("ratio") if ret else None,
        }
    )
    for section, label, key in (
        (cpt.get("downstream") or {}, "CPT+SFT over base+SFT", "cpt_downstream"),
        (prog, "Progressive over single-stage SFT", "progressive"),
    ):
        for m, name in (("rouge-1", "ROUGE-1"), ("bleu-4", "BLEU-4")):
            d = (section.get("jieba") or {}).get(m)
            rows.append(
                {
                    "claim": f"{label}: {name} (jieba convention)",
                    "paper": f"{PAPER[key][m]:.2f}x",
                    "ours": fmt_ratio(d),
                    "verdict": _gain_verdict(d),
                    "value": d.get("ratio") if d else None,
                }
            )
    best = best_row((results.get("speculative") or {}).get("distilled"))
    sp = best.get("speedup_measured") if best else None
    lo, hi = PAPER["speculative_speedup"]
    rows.append(
        {
            "claim": "Speculative decoding speed-up (distilled draft, best k)",
            "paper": f"{lo:.2f}-{hi:.2f}x",
            "ours": f"{fmt_num(sp)}x (k={best['k']})" if sp is not None else "not run",
            "verdict": "not run"
            if sp is None
            else ("in paper range" if lo <= sp <= hi else "below" if sp < lo else "above"),
            "value": sp,
        }
    )
    rows_all = ((results.get("speculative") or {}).get("distilled") or {}).get("rows") or []
    same = [r.get("outputs_identical") for r in rows_all if "outputs_identical" in r]
    rows.append(
        {
            "claim": "Greedy outputs unchanged by speculation",
            "paper": "yes",
            "ours": "not run" if not same else ("yes" if all(same) else "no"),
            "verdict": "not run" if not same else ("holds" if all(same) else "fails"),
            "value": all(same) if same else None,
        }
    )
    return rows


def read_loss_curves(paths: dict[str, str]) -> dict[str, dict[str, list]]:
    """``{label: metrics.jsonl}`` -> ``{label: {series: [[step, value], ...]}}``.

    Every numeric field whose name contains ``loss`` is a series; the x value is ``step``
    (or ``global_step``/``iteration``/``iter``, else the line number). Unreadable lines are
    skipped; a missing file is logged and left out.
    """
    out: dict[str, dict[str, list]] = {}
    for label, path in paths.items():
        p = Path(path)
        if not p.is_file():
            log.warning("loss curve %s: %s not found", label, path)
            continue
        series: dict[str, list] = {}
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines()):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            x = next((rec[k] for k in _X_KEYS if isinstance(rec.get(k), int | float)), n)
            for k, v in rec.items():
                if "loss" in k and isinstance(v, int | float) and not isinstance(v, bool):
                    series.setdefault(k, []).append([x, v])
        out[label] = series
    return out


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/*.png``), ``report.html`` and ``report.json``.

    Args:
        results: the results dict (schema in this module's docstring).
        out_dir: destination folder.

    Returns:
        ``{"md", "html", "json"}`` paths.
    """
    from soaes.eval.report_sections import build_blocks

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claims = headline(results)
    blocks = build_blocks(results, claims)
    title = results.get("title") or "soaes report"
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    paths["md"].write_text(render_markdown(blocks, out / "figures"), encoding="utf-8")
    paths["html"].write_text(render_html(blocks, title), encoding="utf-8")
    body = {**results, "paper": PAPER, "headline": claims}
    paths["json"].write_text(
        json.dumps(body, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    return paths
