"""Run the whole recipe: data -> CPT -> progressive SFT -> distillation -> serve benchmark ->
eval + report.

Each stage is an ordinary pipeline (its own YAML, its own runner) or, for the serve
benchmark, ``soaes bench serve``; this module only wires outputs to inputs with
``key=value`` overrides and skips stages already finished with the same key, so
``soaes run pipelines/full_*.yaml`` resumes a failed run. The serve benchmark runs before the
eval stage because the eval stage writes the report, which includes the serving numbers.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soaes.config.full import FullConfig, ServeBenchRef, StageRef
from soaes.config.loader import config_hash, load_config, save_resolved

log = logging.getLogger(__name__)
DONE = "STAGE_DONE.json"
STARTED = "STAGE_STARTED.json"  # the key a stage was started with (resume only that run)


@dataclass
class Stage:
    """A resolved stage: where it writes, its wiring, and the stages it reads."""

    name: str
    ref: StageRef | ServeBenchRef
    wiring: list[str]
    needs: list[str] = field(default_factory=list)


def stage_key(cfg_hash: str, upstream_keys: list[str]) -> str:
    """Key of a finished stage: its config hash and its inputs' keys."""
    blob = json.dumps([cfg_hash, *upstream_keys])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_done(out: Path) -> dict | None:
    """The ``STAGE_DONE.json`` of a stage folder, or None."""
    try:
        return json.loads((out / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _flow(value: Any) -> str:
    """A value as a one-line YAML/JSON flow literal for an override."""
    return json.dumps(value, ensure_ascii=False)


def plan(cfg: FullConfig, final_sft_stage: str | None = None) -> list[Stage]:
    """The stages in run order with the overrides that wire them together."""
    out = Path(cfg.output_dir)
    o = {
        n: str(out / n)
        for n in (
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
    }
    stages = [
        Stage("data_cpt", cfg.data_cpt, [f"output_dir={o['data_cpt']}"]),
        Stage("data_sft", cfg.data_sft, [f"output_dir={o['data_sft']}"]),
        Stage(
            "cpt",
            cfg.cpt,
            [f"output_dir={o['cpt']}", f"data_dir={o['data_cpt']}", f"model.path={cfg.base_model}"],
            ["data_cpt"],
        ),
        Stage(
            "sft_cpt",
            cfg.sft_progressive,
            [
                f"output_dir={o['sft_cpt']}",
                f"data_dir={o['data_sft']}",
                f"model.path={o['cpt']}/hf",
            ],
            ["data_sft", "cpt"],
        ),
    ]
    if cfg.base_sft_arm:
        stages.append(
            Stage(
                "sft_base",
                cfg.sft_progressive,
                [
                    f"output_dir={o['sft_base']}",
                    f"data_dir={o['data_sft']}",
                    f"model.path={cfg.base_model}",
                ],
                ["data_sft"],
            )
        )
    stages.append(
        Stage(
            "sft_single",
            cfg.sft_single,
            [
                f"output_dir={o['sft_single']}",
                f"data_dir={o['data_sft']}",
                f"model.path={o['cpt']}/hf",
            ],
            ["data_sft", "cpt"],
        )
    )
    stages.append(
        Stage(
            "distill",
            cfg.distill,
            [f"output_dir={o['distill']}", f"target.path={o['sft_cpt']}/hf"],
            ["sft_cpt"],
        )
    )
    if cfg.serve_bench is not None:
        app = "applications.0.args"
        stages.append(
            Stage(
                "serve_bench",
                cfg.serve_bench,
                [
                    f"{app}.target={o['sft_cpt']}/hf",
                    f"{app}.speculation.draft=null",
                    f"{app}.speculation.distill_dir={o['distill']}",
                ],
                ["sft_cpt", "distill"],
            )
        )
    stages.append(
        Stage("eval", cfg.eval, _eval_wiring(cfg, o, final_sft_stage), [s.name for s in stages])
    )
    return [s for s in stages if s.ref.enabled]


def _eval_wiring(cfg: FullConfig, o: dict[str, str], final_sft_stage: str | None) -> list[str]:
    models = [
        {"name": "base", "path": cfg.base_model},
        {"name": "cpt", "path": f"{o['cpt']}/hf"},
        {"name": "cpt_sft", "path": f"{o['sft_cpt']}/hf"},
        {"name": "single_stage", "path": f"{o['sft_single']}/hf"},
    ]
    roles = {
        "cpt_before": "base",
        "cpt_after": "cpt",
        "cpt_sft": "cpt_sft",
        "progressive": "cpt_sft",
        "single_stage": "single_stage",
        "qa_set": "domain",
    }
    if cfg.base_sft_arm:
        models.insert(2, {"name": "base_sft", "path": f"{o['sft_base']}/hf"})
        roles["base_sft"] = "base_sft"
    qa = [
        {"name": "domain", "path": f"{o['data_sft']}/{final_sft_stage or 'UNKNOWN'}/test/qa.jsonl"}
    ]
    # The data_sft pipeline's eval sets (law_recall, law_withheld, ...), each on its own.
    qa += [
        {"name": p.stem, "path": str(p)}
        for p in sorted(Path(o["data_sft"]).glob("eval_sets/*.jsonl"))
    ]
    if cfg.qa_limit:
        qa = [{**q, "limit": cfg.qa_limit} for q in qa]
    ppl = [
        {"name": f"{g}_heldout", "group": g, "validation_dir": f"{o['data_cpt']}/validation/{g}"}
        for g in ("domain", "general")
    ]
    report = {
        "title": f"soaes recipe report: {cfg.name}",
        "speculative": f"{o['distill']}/acceptance_distilled.json",
        "speculative_undistilled": f"{o['distill']}/acceptance_undistilled.json",
        "serving": f"{o['serve_bench']}/bench.json" if cfg.serve_bench else None,
        "loss_curves": {
            "cpt": f"{o['cpt']}/metrics.jsonl",
            **_sft_curves("sft_cpt", cfg.sft_progressive, o),
            **_sft_curves("sft_single", cfg.sft_single, o),
            "distill": f"{o['distill']}/metrics.jsonl",
        },
        "train_runs": {"cpt_sft": o["sft_cpt"], "single_stage": o["sft_single"]}
        | ({"base_sft": o["sft_base"]} if cfg.base_sft_arm else {}),
    }
    return [
        f"output_dir={o['eval']}",
        f"models={_flow(models)}",
        f"qa={_flow(qa)}",
        f"perplexity={_flow(ppl)}",
        f"roles={_flow(roles)}",
        f"report={_flow(report)}",
        "retention.baseline=base",
    ]


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


def _serve_bench_runner(stage: Stage, out: Path):
    """The serve-benchmark stage as (config hash, runner): the hash covers the resolved Serve
    config (app file + overrides + wiring) and the benchmark's own arguments."""
    from soaes.bench import serve as bench
    from soaes.serve.deploy import load_serve_config

    ref = stage.ref
    schema = load_serve_config(ref.app, [*ref.overrides, *stage.wiring])
    blob = json.dumps(
        [schema.model_dump(mode="json"), ref.model_dump(mode="json")], sort_keys=True, default=str
    )
    argv = ref.argv(str(out / "bench.json"), stage.wiring)

    def run() -> dict:
        code = bench.main(argv)
        res = json.loads((out / "bench.json").read_text())
        if code != 0:
            raise RuntimeError(
                f"serve benchmark failed its checks (exit {code}): see {out / 'bench.json'}"
            )
        single, load = res["single_stream"], res["load"]
        return {
            "bench": str(out / "bench.json"),
            "speedup_spec_vs_plain_http": single["speedup_spec_vs_plain_http"],
            "serve_overhead_http_vs_inproc": single["serve_overhead_http_vs_inproc"],
            "identical_outputs_all_four": single["identical_outputs_all_four"],
            "load_by_status": load["by_status"],
        }

    return hashlib.sha256(blob.encode()).hexdigest()[:16], run


def _pipeline_runner(stage: Stage, cfg: FullConfig):
    """A pipeline stage as (resolved config, runner)."""
    from soaes.cli import RUNNERS

    ray_over = [f"ray.address={cfg.ray.address}"] if cfg.ray.address else []
    scfg = load_config(stage.ref.pipeline, [*stage.ref.overrides, *stage.wiring, *ray_over])
    module, func = RUNNERS[scfg.kind].split(":")
    return scfg, lambda: getattr(importlib.import_module(module), func)(scfg)


# Stages that resume from what their folder holds (checkpoints, generated data): output of
# another key must not be resumed. The others rewrite their outputs (data pipelines) or key
# their caches by content (eval's per-model results), so they keep their folder.
RESUMING_KINDS = ("cpt", "sft", "distill")


def prepare_stage_dir(out: Path, key: str, clear_stale: bool = True) -> None:
    """Make ``out`` ready for a run of the stage keyed ``key``.

    A run interrupted with the same key is kept: the stage resumes inside it (e.g. training
    from its last checkpoint). With ``clear_stale``, output left by a different key (changed
    config or upstream) is removed, so no stale checkpoint, data or metrics line is mixed
    into the new run.
    """
    started = None
    try:
        started = json.loads((out / STARTED).read_text()).get("key")
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    if clear_stale and out.exists() and started != key:
        log.info("stage output %s was made with key %s, not %s: removing it", out, started, key)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE).unlink(missing_ok=True)
    (out / STARTED).write_text(json.dumps({"key": key, "time": time.time()}))


def run_stage(stage: Stage, cfg: FullConfig, keys: dict[str, str]) -> dict:
    """Run one stage unless it finished with the same key; record its key and summary."""
    if isinstance(stage.ref, ServeBenchRef):
        out = Path(cfg.output_dir) / stage.name
        cfg_hash, runner = _serve_bench_runner(stage, out)
        kind, what = "serve_bench", f"soaes bench serve --app {stage.ref.app}"
    else:
        scfg, runner = _pipeline_runner(stage, cfg)
        out, cfg_hash = Path(scfg.output_dir), config_hash(scfg)
        kind, what = scfg.kind, stage.ref.pipeline
    key = stage_key(cfg_hash, [keys[n] for n in stage.needs if n in keys])
    done = read_done(out)
    if done and done.get("key") == key:
        log.info("stage %s: finished with the same key %s, skipped", stage.name, key)
        keys[stage.name] = key
        return {"stage": stage.name, "status": "skipped", "key": key}
    prepare_stage_dir(out, key, clear_stale=kind in RESUMING_KINDS)
    log.info("stage %s: running %s (kind %s)", stage.name, what, kind)
    t0 = time.time()
    summary = runner()
    record = {
        "stage": stage.name,
        "status": "ran",
        "key": key,
        "kind": kind,
        "seconds": round(time.time() - t0, 1),
        "summary": summary,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str, ensure_ascii=False))
    tmp.replace(out / DONE)  # written last: a stage without it did not finish
    keys[stage.name] = key
    return record


def run_full(cfg: FullConfig) -> dict:
    """Run (or resume) the whole recipe and copy the report to ``<output_dir>/``."""
    from soaes.ray_env import connect

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
    for name in ("report.md", "report.html", "report.json"):
        src = out / "eval" / name
        if src.exists():
            shutil.copy2(src, out / name)
    if (out / "eval" / "figures").is_dir():  # report.md links figures/*.png
        shutil.copytree(out / "eval" / "figures", out / "figures", dirs_exist_ok=True)
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
    return summary
