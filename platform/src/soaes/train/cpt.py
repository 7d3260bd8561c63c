"""Continual pre-training (pipeline ``cpt``): causal-LM loss on the packed domain + replay
shards, with held-out perplexity of every mixing group (the retention signal) during training.

Input (the ``data_cpt`` pipeline's output)::

    <data_dir>/manifest.json                  eos_id, pad_id, seq_len, tokenizer
    <data_dir>/train/*.parquet                input_ids, position_ids, n_pad (packed blocks)
    <data_dir>/validation/<group>/*.parquet   same columns, one folder per mixing group

Output: ``<output_dir>/{checkpoints/, hf/, metrics.jsonl, loss_curve.png, config.resolved.yaml}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from soaes.config.loader import config_hash, save_resolved
from soaes.config.train import CPTConfig
from soaes.models.presets import resolve
from soaes.train.data import count_rows, parquet_dataset, read_rows
from soaes.train.launch import check_run_dir, fit, plan_fields, read_data_manifest, summarize
from soaes.train.plan import RunInfo, RunPlan
from soaes.train.worker import causal_lm_worker

log = logging.getLogger(__name__)

CPT_COLUMNS = ["input_ids", "position_ids", "n_pad"]


def eval_groups(data_dir: Path, wanted: list[str] | None) -> list[str]:
    """Validation groups to evaluate: the configured ones (must exist) or all present."""
    root = data_dir / "validation"
    present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if wanted is None:
        return present
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise FileNotFoundError(
            f"eval_groups: no {root}/<group> folder for {missing}; have {present}"
        )
    return list(wanted)


def build_plan(
    cfg: CPTConfig, run_dir: Path, groups: list[str], manifest: dict[str, Any]
) -> RunPlan:
    """The worker plan of a CPT run (steps from the row count, model path resolved)."""
    data_dir = Path(cfg.data_dir)
    rows = count_rows([str(data_dir / "train")])
    model_path = resolve(cfg.model.path)
    n_eval = cfg.logging.eval_max_batches * cfg.micro_batch_size * cfg.scaling.num_workers
    return RunPlan(
        run_dir=str(run_dir),
        model_path=model_path,
        tokenizer_src=resolve(cfg.model.tokenizer) if cfg.model.tokenizer else model_path,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        collate="cpt",
        pad_id=int(manifest.get("pad_id", 0)),
        eval_rows={
            f"val_{g}": read_rows([str(data_dir / "validation" / g)], n_eval, CPT_COLUMNS)
            for g in groups
        },
        run=RunInfo(cfg.name, "cpt", init_from=model_path, config_hash=config_hash(cfg)),
        **plan_fields(cfg, rows, cfg.epochs, cfg.max_steps),
    )


def run_cpt(cfg: CPTConfig) -> dict[str, Any]:
    """Run continual pre-training on Ray Train + DeepSpeed and return the run summary.

    Connects to Ray (``cfg.ray``), writes ``config.resolved.yaml``, launches
    ``scaling.num_workers`` DeepSpeed workers, resumes from the run folder's checkpoints when
    present (``checkpoint.resume``), restarts failed worker groups from the last checkpoint
    (``fault.max_failures``) and exports ``hf/`` at the end.

    Returns:
        :func:`soaes.train.launch.summarize` of the run: steps, first/last train loss,
        first/last held-out loss and perplexity per group, restarts, start-up time, paths.
    """
    from soaes.ray_env import connect

    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    run_dir = Path(cfg.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_dir(run_dir, cfg.checkpoint.resume)
    save_resolved(cfg, run_dir)
    data_dir = Path(cfg.data_dir)
    manifest = read_data_manifest(data_dir)
    groups = eval_groups(data_dir, cfg.eval_groups)
    plan = build_plan(cfg, run_dir, groups, manifest)
    train = parquet_dataset([str(data_dir / "train")], CPT_COLUMNS, cfg.materialize_max_mb)
    datasets = {"train": train}
    log.info(
        "cpt %s: %d steps, %d workers -> %s",
        cfg.name,
        plan.total_steps,
        cfg.scaling.num_workers,
        run_dir,
    )
    fit(causal_lm_worker, plan, datasets, cfg.scaling, cfg.fault, cfg.checkpoint.keep_last, run_dir)
    return {"kind": "cpt", "name": cfg.name, **summarize(run_dir)}
