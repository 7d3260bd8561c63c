"""Driver side of a training run: step plan, data manifest, Ray Train ``TorchTrainer`` launch,
run summary.

:func:`fit` is the one place a ``TorchTrainer`` is built (ScalingConfig, RunConfig with
FailureConfig + CheckpointConfig, worker runtime env, ordered datasets); CPT, SFT and
distillation runs all launch through it with their own worker function.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from soaes.config.distill import DistillConfig
from soaes.config.train import (
    CPTConfig,
    FaultSpec,
    OptimSpec,
    ScalingSpec,
    SFTConfig,
    check_fail_rank,
)
from soaes.train import checkpoints as ckpt
from soaes.train.console import RAY_TRAIN_CONSOLE_LEVEL
from soaes.train.data import ordered_data_config
from soaes.train.ds_config import build_ds_config
from soaes.train.engine import default_extensions_dir
from soaes.train.metrics import read_jsonl

log = logging.getLogger(__name__)


def plan_steps(
    rows: int,
    micro_batch_size: int,
    world: int,
    grad_accum_steps: int,
    epochs: float,
    max_steps: int | None,
) -> tuple[int, int]:
    """``(global micro-batches per epoch, total optimizer steps)``.

    An epoch is cut to a whole number of optimizer steps (incomplete global batches dropped).
    """
    rows_per_step = micro_batch_size * world * grad_accum_steps
    micro_per_epoch = (rows // (micro_batch_size * world) // grad_accum_steps) * grad_accum_steps
    if micro_per_epoch == 0:
        raise ValueError(
            f"{rows} training rows make no optimizer step of {rows_per_step} rows "
            f"(micro_batch_size x num_workers x grad_accum_steps): lower them or add data"
        )
    total = max_steps or max(1, math.ceil(epochs * micro_per_epoch / grad_accum_steps))
    return micro_per_epoch, total


def plan_fields(
    cfg: CPTConfig | SFTConfig | DistillConfig,
    rows: int,
    epochs: float,
    max_steps: int | None,
    optim: OptimSpec | None = None,
) -> dict[str, Any]:
    """The :class:`~soaes.train.loop.RunPlan` fields every training kind takes from its config
    the same way: steps (:func:`plan_steps` over ``rows``), DeepSpeed config, batch sizes,
    checkpointing, logging, seed, fault injection, submit time.

    Args:
        cfg: the run's config (``cpt``, ``sft`` or ``distill``).
        rows: training rows of one epoch.
        epochs: passes over them (ignored when ``max_steps`` is set).
        max_steps: optimizer steps, or None to derive them from ``epochs``.
        optim: optimizer settings when not ``cfg.optim`` (an SFT stage's own learning rate).
    """
    optim = optim or cfg.optim
    fail_at_step = fault_step(cfg.fault.fail_at_step)
    check_fail_rank(fail_at_step, cfg.fault.fail_rank, cfg.scaling.num_workers)
    micro_per_epoch, total = plan_steps(
        rows,
        cfg.micro_batch_size,
        cfg.scaling.num_workers,
        cfg.grad_accum_steps,
        epochs,
        max_steps,
    )
    return {
        "activation_checkpointing": cfg.deepspeed.activation_checkpointing,
        "ds_config": build_ds_config(
            cfg.deepspeed,
            optim,
            cfg.micro_batch_size,
            cfg.grad_accum_steps,
            cfg.scaling.num_workers,
        ),
        "optim": optim,
        "micro_batch_size": cfg.micro_batch_size,
        "grad_accum_steps": cfg.grad_accum_steps,
        "total_steps": total,
        "micro_per_epoch": micro_per_epoch,
        "checkpoint": cfg.checkpoint,
        "logging": cfg.logging,
        "seed": cfg.seed,
        "fail_at_step": fail_at_step,
        "fail_rank": cfg.fault.fail_rank,
        "submit_time": time.time(),
    }


def read_data_manifest(data_dir: str | Path) -> dict[str, Any]:
    """``<data_dir>/manifest.json`` of the data pipeline, with a clear error when missing."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"data_dir: {path} not found: run the matching data pipeline first")
    return json.loads(path.read_text(encoding="utf-8"))


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to train over existing checkpoints unless resuming was asked for."""
    if not resume and ckpt.resolve_latest(run_dir / "checkpoints") is not None:
        raise FileExistsError(
            f"{run_dir}/checkpoints has checkpoints: set checkpoint.resume=true to continue "
            "from them, or choose a new output_dir"
        )


def fault_step(configured: int | None) -> int | None:
    """The fault-injection step: the config's, else ``$SOAES_FAIL_AT_STEP``."""
    env = os.environ.get("SOAES_FAIL_AT_STEP")
    return configured if configured is not None else (int(env) if env else None)


def scaling_config(spec: ScalingSpec):
    """Ray Train ``ScalingConfig`` of a :class:`ScalingSpec`."""
    from ray.train import ScalingConfig

    res: dict[str, float] = {"CPU": spec.cpus_per_worker, **spec.resources_per_worker}
    if spec.use_gpu:
        res["GPU"] = spec.gpus_per_worker
    return ScalingConfig(
        num_workers=spec.num_workers,
        use_gpu=spec.use_gpu,
        resources_per_worker=res,
        placement_strategy=spec.placement_strategy,
    )


def worker_env() -> dict[str, str]:
    """Env vars every training worker gets through the runtime env: the compiled-op cache
    (so workers load DeepSpeed's ops instead of compiling them) and quiet tokenizers."""
    return {
        "TORCH_EXTENSIONS_DIR": default_extensions_dir(),
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "false"),
    }


def fit(
    train_fn: Callable[[dict], None],
    plan: Any,
    datasets: dict[str, Any],
    scaling: ScalingSpec,
    fault: FaultSpec,
    keep_last: int,
    run_dir: str | Path,
) -> Any:
    """Run ``train_fn({"plan": plan})`` on a Ray Train worker group and wait for it.

    Args:
        train_fn: module-level worker function (picklable), e.g. :func:`soaes.train.worker.causal_lm_worker`.
        plan: the worker's resolved plan (a picklable dataclass).
        datasets: Ray Datasets by name; every worker reads each in full and in order
            (``get_dataset_shard(name)``, see :mod:`soaes.train.data`).
        scaling: workers and resources.
        fault: ``max_failures``: restarts from the last reported checkpoint.
        keep_last: checkpoints Ray keeps in its own index (mirrors the run folder's).
        run_dir: the run folder; Ray Train's state goes to ``<run_dir>/ray``.

    Returns:
        Ray Train's ``Result``.
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig
    from ray.train.torch import TorchTrainer

    run_config = RunConfig(
        name="ray",
        storage_path=str(Path(run_dir).resolve()),
        failure_config=FailureConfig(max_failures=fault.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=keep_last),
        worker_runtime_env={"env_vars": worker_env()},
        # Ray Train's INFO lines go to its log files (Ray session logs/train/), not the
        # terminal; the workers route theirs in soaes.train.console.route_worker_logs.
        logging_config=LoggingConfig(log_level=RAY_TRAIN_CONSOLE_LEVEL),
    )
    trainer = TorchTrainer(
        train_fn,
        train_loop_config={"plan": plan},
        scaling_config=scaling_config(scaling),
        run_config=run_config,
        datasets=datasets,
        dataset_config=ordered_data_config(),
    )
    return trainer.fit()


def summarize(run_dir: str | Path) -> dict[str, Any]:
    """A JSON-able summary of a finished run from its ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    recs = read_jsonl(run_dir / "metrics.jsonl")
    train = {r["step"]: r for r in recs if r.get("event") == "train"}
    evals = {r["step"]: r for r in recs if r.get("event") == "eval"}
    end = next((r for r in reversed(recs) if r.get("event") == "end"), {})
    first = next((r for r in recs if r.get("event") == "first_step"), {})
    steps = sorted(train)
    strip = ("event", "time", "step")
    return {
        "run_dir": str(run_dir),
        "steps": end.get("step"),
        "tokens": end.get("tokens"),
        "first_train_loss": train[steps[0]]["loss"] if steps else None,
        "last_train_loss": train[steps[-1]]["loss"] if steps else None,
        "eval_first": {k: v for k, v in evals[min(evals)].items() if k not in strip}
        if evals
        else {},
        "eval_last": {k: v for k, v in evals[max(evals)].items() if k not in strip}
        if evals
        else {},
        "restarts": sum(1 for r in recs if r.get("event") == "resume"),
        "submit_to_first_step_s": first.get("since_submit_s"),
        "peak_rss_mb_per_worker": end.get("peak_rss_mb"),
        "hf": str(run_dir / "hf") if (run_dir / "hf").exists() else None,
    }
