"""Run the whole recipe: data -> CPT -> progressive SFT -> distillation -> serve benchmark ->
eval + report.

Each stage is an ordinary pipeline (its own YAML, its own runner) or, for the serve
benchmark, ``soaes bench serve``; this module only wires outputs to inputs, as typed field
values set on each stage's validated config (:func:`soaes.config.loader.update_config`: a
wiring error names the stage and the field), and :mod:`soaes.recipe.stages` skips stages
already finished with the same key, so ``soaes run pipelines/full_*.yaml`` resumes a failed
run. The serve benchmark runs before the eval stage because the eval stage writes the
report, which includes the serving numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from soaes.config.eval import (
    EvalModelConfig,
    PerplexitySetConfig,
    QASetConfig,
    ReportInputsConfig,
    RolesConfig,
)
from soaes.config.full import FullConfig, StageRef
from soaes.config.loader import ConfigError, load_config, save_resolved
from soaes.ray_env import connect
from soaes.recipe.checks import data_consistency
from soaes.recipe.publish import publish_report
from soaes.recipe.stages import Stage, run_stage
from soaes.train.metrics import format_duration

log = logging.getLogger(__name__)

STAGE_NAMES = (
    "data_cpt",
    "data_sft",
    "cpt",
    "sft_cpt",
    "sft_base",
    "sft_single",
    "distill",
    "serve_bench",
    "eval",
)


def stage_dirs(cfg: FullConfig) -> dict[str, str]:
    """Each stage's output folder: ``<output_dir>/<stage>``."""
    return {n: str(Path(cfg.output_dir) / n) for n in STAGE_NAMES}


def _training_stages(cfg: FullConfig, o: dict[str, str]) -> list[Stage]:
    """Data, CPT, the SFT arms and the distillation, wired output to input."""
    sft = lambda name, model: {  # noqa: E731
        "output_dir": o[name],
        "data_dir": o["data_sft"],
        "model.path": model,
    }
    stages = [
        Stage("data_cpt", cfg.data_cpt, {"output_dir": o["data_cpt"]}),
        Stage("data_sft", cfg.data_sft, {"output_dir": o["data_sft"]}),
        Stage(
            "cpt",
            cfg.cpt,
            {"output_dir": o["cpt"], "data_dir": o["data_cpt"], "model.path": cfg.base_model},
            ["data_cpt"],
        ),
        Stage(
            "sft_cpt", cfg.sft_progressive, sft("sft_cpt", f"{o['cpt']}/hf"), ["data_sft", "cpt"]
        ),
    ]
    if cfg.base_sft_arm:
        stages.append(
            Stage("sft_base", cfg.sft_progressive, sft("sft_base", cfg.base_model), ["data_sft"])
        )
    stages.append(
        Stage(
            "sft_single", cfg.sft_single, sft("sft_single", f"{o['cpt']}/hf"), ["data_sft", "cpt"]
        )
    )
    distill = {"output_dir": o["distill"], "target.path": f"{o['sft_cpt']}/hf"}
    stages.append(Stage("distill", cfg.distill, distill, ["sft_cpt"]))
    return stages


def _serve_bench_stage(cfg: FullConfig, o: dict[str, str]) -> Stage:
    """The serve benchmark: the progressive-SFT target with the distilled draft."""
    app = "applications.0.args"
    wiring = {
        f"{app}.target": f"{o['sft_cpt']}/hf",
        f"{app}.speculation.draft": None,
        f"{app}.speculation.distill_dir": o["distill"],
    }
    return Stage("serve_bench", cfg.serve_bench, wiring, ["sft_cpt", "distill"])


def plan(cfg: FullConfig, final_sft_stage: str | None = None) -> list[Stage]:
    """The enabled stages in run order, each with the wiring that feeds it its inputs."""
    o = stage_dirs(cfg)
    stages = _training_stages(cfg, o)
    if cfg.serve_bench is not None:
        stages.append(_serve_bench_stage(cfg, o))
    eval_wiring = _eval_wiring(cfg, o, final_sft_stage)
    stages.append(Stage("eval", cfg.eval, eval_wiring, [s.name for s in stages]))
    return [s for s in stages if s.ref.enabled]


def _eval_models(cfg: FullConfig, o: dict[str, str]) -> tuple[list[EvalModelConfig], RolesConfig]:
    """The models the eval stage scores and the ablation roles they play."""
    models = [
        EvalModelConfig(name="base", path=cfg.base_model),
        EvalModelConfig(name="cpt", path=f"{o['cpt']}/hf"),
        EvalModelConfig(name="cpt_sft", path=f"{o['sft_cpt']}/hf"),
        EvalModelConfig(name="single_stage", path=f"{o['sft_single']}/hf"),
    ]
    roles: dict[str, str] = {
        "cpt_before": "base",
        "cpt_after": "cpt",
        "cpt_sft": "cpt_sft",
        "progressive": "cpt_sft",
        "single_stage": "single_stage",
    }
    if cfg.base_sft_arm:
        models.insert(2, EvalModelConfig(name="base_sft", path=f"{o['sft_base']}/hf"))
        roles["base_sft"] = "base_sft"
    return models, RolesConfig(**roles)


def _eval_qa_sets(
    cfg: FullConfig, o: dict[str, str], final_sft_stage: str | None
) -> list[QASetConfig]:
    """The held-out Q&A sets the eval stage scores: the data_sft pipeline's eval sets
    (law_recall, law_withheld, scenario_article, insurance_zh), each reported on its own;
    without them, the SFT pipeline's last stage's test split as one ``domain`` set."""
    sets = sorted(Path(o["data_sft"]).glob("eval_sets/*.jsonl"))
    if sets:
        return [QASetConfig(name=p.stem, path=str(p), limit=cfg.qa_limit) for p in sets]
    path = f"{o['data_sft']}/{final_sft_stage or 'UNKNOWN'}/test/qa.jsonl"
    return [QASetConfig(name="domain", path=path, limit=cfg.qa_limit)]


def _eval_report_inputs(cfg: FullConfig, o: dict[str, str]) -> ReportInputsConfig:
    """The other stages' results the report shows."""
    return ReportInputsConfig(
        title=f"soaes recipe report: {cfg.name}",
        speculative=f"{o['distill']}/acceptance_distilled.json",
        speculative_undistilled=f"{o['distill']}/acceptance_undistilled.json",
        speculative_eagle3=f"{o['distill']}/acceptance_eagle3.json",
        speculative_choice=f"{o['distill']}/acceptance.json",
        serving=f"{o['serve_bench']}/bench.json" if cfg.serve_bench else None,
        loss_curves={
            "cpt": f"{o['cpt']}/metrics.jsonl",
            **_sft_curves("sft_cpt", cfg.sft_progressive, o),
            **_sft_curves("sft_single", cfg.sft_single, o),
            "distill": f"{o['distill']}/metrics.jsonl",
        },
        train_runs={"cpt_sft": o["sft_cpt"], "single_stage": o["sft_single"]}
        | ({"base_sft": o["sft_base"]} if cfg.base_sft_arm else {}),
    )


def _eval_wiring(cfg: FullConfig, o: dict[str, str], final_sft_stage: str | None) -> dict:
    models, roles = _eval_models(cfg, o)
    qa = _eval_qa_sets(cfg, o, final_sft_stage)
    # The headline comparisons use recall of CPT text when that set exists (knowledge
    # injection is what CPT claims); every other set has its own table in the report.
    names = [q.name for q in qa]
    roles = roles.model_copy(update={"qa_set": "law_recall" if "law_recall" in names else names[0]})
    ppl = [
        PerplexitySetConfig(
            name=f"{g}_heldout", group=g, validation_dir=f"{o['data_cpt']}/validation/{g}"
        )
        for g in ("domain", "general")
    ]
    return {
        "output_dir": o["eval"],
        "models": models,
        "qa": qa,
        "perplexity": ppl,
        "roles": roles,
        "report": _eval_report_inputs(cfg, o),
        "retention.baseline": "base",
    }


def _sft_curves(arm: str, ref: StageRef, o: dict[str, str]) -> dict[str, str]:
    """``{"<arm> <stage>": metrics.jsonl}``: an SFT run keeps one run folder per stage."""
    names = [st.name for st in load_config(ref.pipeline, ref.overrides).stages]
    return {f"{arm} {n}": f"{o[arm]}/{n}/metrics.jsonl" for n in names}


def _final_sft_stage(data_sft_dir: Path) -> str | None:
    try:
        stages = json.loads((data_sft_dir / "manifest.json").read_text())["stages"]
        return stages[-1]["name"]
    except (OSError, KeyError, IndexError, json.JSONDecodeError):
        return None


def check_data(cfg: FullConfig) -> None:
    """Refuse data configs whose eval-set disclosures would be false (see
    :func:`soaes.recipe.checks.data_consistency`)."""
    if not (cfg.data_cpt.enabled and cfg.data_sft.enabled):
        return
    cpt = load_config(cfg.data_cpt.pipeline, cfg.data_cpt.overrides)
    sft = load_config(cfg.data_sft.pipeline, cfg.data_sft.overrides)
    problems = data_consistency(cpt, sft)
    if problems:
        raise ConfigError("data_cpt / data_sft disagree: " + "; ".join(problems))


def run_full(cfg: FullConfig) -> dict[str, Any]:
    """Run (or resume) the whole recipe and copy the report to ``<output_dir>/``."""
    check_data(cfg)
    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    out = Path(cfg.output_dir)
    save_resolved(cfg, out)
    keys: dict[str, str] = {}
    records = []
    for stage in plan(cfg):
        if stage.name == "eval":  # its wiring needs the SFT stage names, known only now
            stage = next(
                s for s in plan(cfg, _final_sft_stage(out / "data_sft")) if s.name == "eval"
            )
        records.append(run_stage(stage, cfg, keys))
    publish_report(out, records, stage_dirs(cfg), cfg.report_note)
    summary = {
        "output_dir": str(out),
        "report": str(out / "report.md"),
        "stages": [
            {k: r[k] for k in ("stage", "status", "key") if k in r}
            | ({"seconds": r["seconds"]} if "seconds" in r else {})
            for r in records
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("recipe %s finished:\n%s\nreport: %s", cfg.name, summary_table(records), out)
    return summary


def summary_table(records: list[dict]) -> str:
    """The end-of-run table: each stage, whether it ran or was skipped, its wall time."""
    rows = [("stage", "status", "wall time")]
    for r in records:
        wall = format_duration(r["seconds"]) if "seconds" in r else "-"
        rows.append((r["stage"], r["status"], wall))
    rows.append(("total", "", format_duration(sum(r.get("seconds", 0) for r in records))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
