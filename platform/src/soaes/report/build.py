"""The typed :class:`~soaes.report.schema.Results` of an eval run, from its per-model dicts."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from soaes.config.eval import EvalConfig
from soaes.report.claims import headline
from soaes.report.domain import ECHO, domain_set, echo_raw, qa_cells, samples
from soaes.report.inputs import read_json, read_loss_curves
from soaes.report.measures import Boot, model_result, retention
from soaes.report.parity import parity
from soaes.report.schema import Comparison, Results, Retention, Serving, Speculative

# (key, label, before role, after role, same starting checkpoint required)
ABLATIONS = (
    ("cpt_downstream", "Downstream: base+SFT vs CPT+SFT", "base_sft", "cpt_sft", False),
    ("progressive", "Domain-progressive vs single-stage SFT", "single_stage", "progressive", True),
)


def start_models(cfg: EvalConfig) -> dict[str, str]:
    """Each arm's starting model, when that model is evaluated too."""
    r = cfg.roles
    pairs = (
        (r.cpt_after, r.cpt_before),
        (r.base_sft, r.cpt_before),
        (r.cpt_sft, r.cpt_after),
        (r.progressive, r.cpt_after),
        (r.single_stage, r.cpt_after),
    )
    return {arm: start for arm, start in pairs if arm and start}


def comparison(cfg: EvalConfig, raw: dict[str, dict], boot: Boot, spec: tuple) -> Comparison | None:
    """One ablation over every set both arms answered, with its parity table."""
    key, label, before_role, after_role, same_start = spec
    before, after = getattr(cfg.roles, before_role), getattr(cfg.roles, after_role)
    if not (before and after and before in raw and after in raw):
        return None
    runs = cfg.report.train_runs
    par = None
    if before in runs and after in runs:
        par = parity((before, runs[before]), (after, runs[after]), same_start)
    ok = par.comparable if par else True
    sets = [s for s in raw[before]["qa"] if s in raw[after]["qa"]]
    cells = {s: qa_cells(raw[before]["qa"][s], raw[after]["qa"][s], boot, ok) for s in sets}
    return Comparison(key=key, label=label, before=before, after=after, cells=cells, parity=par)


def cpt_retention(cfg: EvalConfig, per_model: dict[str, dict], boot: Boot) -> Retention | None:
    """General ability after CPT against before, when both roles were evaluated."""
    before, after = cfg.roles.cpt_before, cfg.roles.cpt_after
    if not (before and after and before in per_model and after in per_model):
        return None
    return retention(after, before, per_model[before], per_model[after], boot)


def _inputs(cfg: EvalConfig) -> dict[str, Any]:
    """Speculative, serving and loss-curve sections from the files the config names."""
    rep = cfg.report
    spec: dict[str, Any] = {
        k: read_json(p)
        for k, p in (
            ("distilled", rep.speculative),
            ("undistilled", rep.speculative_undistilled),
            ("eagle3", rep.speculative_eagle3),
        )
    }
    spec["served"] = (read_json(rep.speculative_choice) or {}).get("served")
    serving = read_json(rep.serving)
    return {
        "speculative": Speculative(**{k: v for k, v in spec.items() if v is not None}),
        "serving": Serving(**serving) if serving is not None else None,
        "loss_curves": read_loss_curves(rep.loss_curves),
    }


def build_results(
    cfg: EvalConfig,
    per_model: dict[str, dict],
    qa_sets: dict[str, dict],
    config_hash: str | None = None,
) -> Results:
    """Typed results: models (echo added), per-set tables, retention, ablations, headline."""
    r = cfg.retention
    boot = Boot(n_boot=r.n_boot, seed=r.seed, ci=r.ci)
    baseline = r.baseline or cfg.models[0].name
    echo = {"path": ECHO, "seconds": 0.0, "mmlu": None, "perplexity": {}}
    echo["qa"] = {k: echo_raw(s, cfg.generation.max_new_tokens) for k, s in qa_sets.items()}
    raw = {**per_model, ECHO: echo} if qa_sets else dict(per_model)
    items = {k: s["items"] for k, s in qa_sets.items()}
    models = {k: model_result(v, items, boot) for k, v in raw.items()}
    starts = start_models(cfg)
    base = cfg.roles.cpt_before or baseline
    results = Results(
        title=cfg.report.title or f"soaes evaluation: {cfg.name}",
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        config_hash=config_hash,
        models=models,
        domain=[domain_set(k, items[k], models, base, starts) for k in qa_sets],
        samples=samples(qa_sets, raw),
        retention=[
            retention(k, baseline, per_model[baseline], v, boot)
            for k, v in per_model.items()
            if k != baseline and (v["mmlu"] or v["perplexity"])
        ],
        cpt_retention=cpt_retention(cfg, per_model, boot),
        comparisons=[c for spec in ABLATIONS if (c := comparison(cfg, raw, boot, spec))],
        **_inputs(cfg),
    )
    qa_set = cfg.roles.qa_set or next(iter(qa_sets), None)
    return results.model_copy(update={"headline": headline(results, qa_set)})
