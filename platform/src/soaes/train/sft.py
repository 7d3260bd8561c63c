"""Domain-progressive SFT (pipeline ``sft``): a curriculum of stages, each initialised from
the previous stage's exported weights, loss on assistant tokens only.

Input (the ``data_sft`` pipeline's output)::

    <data_dir>/manifest.json                                   stages: [{name, epochs, ...}]
    <data_dir>/<stage>/{train,validation,test}/*.parquet       input_ids, labels (-100 off-assistant)

Output::

    <output_dir>/<stage>/{checkpoints/, hf/, metrics.jsonl, loss_curve.png, config.resolved.yaml}
    <output_dir>/hf -> <last stage>/hf          (relative symlink)
    <output_dir>/summary.json, config.resolved.yaml

``mode: single_stage`` is the ablation baseline: one stage whose ``data`` lists every stage
folder, mixed by a seeded shuffle. A finished stage (complete ``hf/`` export of the same
config and initial weights) is skipped when the pipeline is run again, so a stopped
curriculum resumes at the stage it stopped in (and within it, at its last checkpoint).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from soaes.config.loader import config_hash, save_resolved
from soaes.config.train import SFTConfig, SFTStageSpec
from soaes.models.checkpoint import export_meta, is_export, link_export
from soaes.models.presets import resolve
from soaes.train.data import count_rows, parquet_dataset, read_rows
from soaes.train.data_seen import write_data_seen
from soaes.train.launch import check_run_dir, fit, plan_fields, read_data_manifest, summarize
from soaes.train.plan import RunInfo, RunPlan
from soaes.train.worker import causal_lm_worker

log = logging.getLogger(__name__)

SFT_COLUMNS = ["input_ids", "labels"]


def split_dirs(data_dir: Path, names: list[str], split: str) -> list[str]:
    """``<data_dir>/<name>/<split>`` for each stage name, each checked to exist."""
    out = []
    for n in names:
        p = data_dir / n / split
        if not p.is_dir():
            raise FileNotFoundError(
                f"stages: {p} not found (data stages: {sorted(_data_stages(data_dir))})"
            )
        out.append(str(p))
    return out


def _data_stages(data_dir: Path) -> list[str]:
    return (
        [p.name for p in data_dir.iterdir() if (p / "train").is_dir()] if data_dir.is_dir() else []
    )


def stage_epochs(stage: SFTStageSpec, manifest: dict[str, Any]) -> float:
    """Epochs of a stage: its own, else the data manifest's for that stage, else 1."""
    if stage.epochs is not None:
        return stage.epochs
    by_name = {s.get("name"): s for s in manifest.get("stages", [])}
    return float(by_name.get(stage.name, {}).get("epochs", 1.0))


def pad_id_of(tokenizer_src: str) -> int:
    """Pad token id of a tokenizer (falls back to eos when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise ValueError(f"tokenizer {tokenizer_src}: no pad or eos token to pad SFT batches with")
    return int(pad)


def stage_plan(
    cfg: SFTConfig,
    stage: SFTStageSpec,
    init: str,
    run_dir: Path,
    manifest: dict[str, Any],
    tokenizer_src: str,
    eval_names: list[str],
) -> RunPlan:
    """The worker plan of one stage: its data, LR, epochs, initial weights."""
    data_dir = Path(cfg.data_dir)
    rows = count_rows(split_dirs(data_dir, stage.data_names(), "train"))
    optim = cfg.optim.model_copy(update={"lr": stage.lr}) if stage.lr else cfg.optim
    n_eval = cfg.logging.eval_max_batches * cfg.micro_batch_size * cfg.scaling.num_workers
    return RunPlan(
        run_dir=str(run_dir),
        model_path=init,
        tokenizer_src=tokenizer_src,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        collate="sft",
        pad_id=pad_id_of(tokenizer_src),
        pad_to_multiple=cfg.pad_to_multiple,
        shuffle_buffer_rows=cfg.shuffle_buffer_rows,
        eval_rows={
            f"val_{n}": read_rows(split_dirs(data_dir, [n], "validation"), n_eval, SFT_COLUMNS)
            for n in eval_names
        },
        run=RunInfo(
            f"{cfg.name}/{stage.name}",
            "sft",
            init_from=init,
            config_hash=config_hash(cfg),
            stage=stage.name,
        ),
        **plan_fields(cfg, rows, stage_epochs(stage, manifest), stage.max_steps, optim),
    )


def stage_done(run_dir: Path, cfg: SFTConfig, init: str) -> bool:
    """True when the stage already exported weights for this config and initial weights."""
    hf = run_dir / "hf"
    if not is_export(hf):
        return False
    meta = export_meta(hf)
    return meta.get("config_hash") == config_hash(cfg) and meta.get("init_from") == init


def run_stage(
    cfg: SFTConfig, stage: SFTStageSpec, init: str, tokenizer_src: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Train one stage in ``<output_dir>/<stage.name>`` (or skip it if done); its summary."""
    run_dir = Path(cfg.output_dir).resolve() / stage.name
    if stage_done(run_dir, cfg, init):
        log.info("sft stage %s: already done, skipped", stage.name)
        return {"stage": stage.name, "skipped": True, **summarize(run_dir)}
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_dir(run_dir, cfg.checkpoint.resume)
    save_resolved(cfg, run_dir)
    data_dir = Path(cfg.data_dir)
    # Held-out sets: every stage's validation split, so later stages show forgetting too.
    names = [n for s in cfg.stages for n in s.data_names()]
    eval_names = [n for n in dict.fromkeys(names) if (data_dir / n / "validation").is_dir()]
    plan = stage_plan(cfg, stage, init, run_dir, manifest, tokenizer_src, eval_names)
    train_dirs = split_dirs(data_dir, stage.data_names(), "train")
    datasets = {"train": parquet_dataset(train_dirs, SFT_COLUMNS, cfg.materialize_max_mb)}
    log.info("sft stage %s: %d steps from %s", stage.name, plan.total_steps, init)
    fit(causal_lm_worker, plan, datasets, cfg.scaling, cfg.fault, cfg.checkpoint.keep_last, run_dir)
    summary = summarize(run_dir)
    write_data_seen(
        run_dir,
        dict(zip(stage.data_names(), train_dirs, strict=True)),
        summary["steps"] or plan.total_steps,
        plan.micro_batch_size * cfg.scaling.num_workers * plan.grad_accum_steps,
        plan.optim,
        init,
    )
    return {"stage": stage.name, "skipped": False, "init_from": init, **summary}


def run_sft(cfg: SFTConfig) -> dict[str, Any]:
    """Run the SFT curriculum (or the single mixed stage) and return a summary per stage.

    Stage k starts from ``<output_dir>/<stage k-1>/hf``; the first from ``cfg.model``.
    ``<output_dir>/hf`` points at the last stage's export when the run ends.
    """
    from soaes.ray_env import connect

    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    out = Path(cfg.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out)
    manifest = read_data_manifest(cfg.data_dir)
    init = resolve(cfg.model.path)
    tokenizer_src = resolve(cfg.model.tokenizer) if cfg.model.tokenizer else init
    stages = []
    for stage in cfg.stages:
        stages.append(run_stage(cfg, stage, init, tokenizer_src, manifest))
        init = str(out / stage.name / "hf")
    link_export(out / cfg.stages[-1].name / "hf", out / "hf")
    summary = {
        "kind": "sft",
        "name": cfg.name,
        "mode": cfg.mode,
        "hf": str(out / "hf"),
        "stages": stages,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary
