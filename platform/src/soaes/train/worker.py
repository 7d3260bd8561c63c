"""The per-worker function of CPT and SFT runs (``TorchTrainer(train_loop_per_worker=...)``).

Reads top to bottom: set up the process, build the DeepSpeed engine, resume (Ray's last
reported checkpoint after a failure, else ``checkpoints/latest`` of the run folder), load
the held-out sets, train, save, export HF weights. Every step is a function of
:mod:`soaes.train.engine`, :mod:`soaes.train.data`, :mod:`soaes.train.checkpoints`,
:mod:`soaes.train.loop` and :mod:`soaes.models.checkpoint`. The start-up steps are
:func:`start_worker`, which the distillation worker (:mod:`soaes.train.distill`) shares
before it adds its teacher and loss.
"""

from __future__ import annotations

import functools
import logging
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soaes.models.checkpoint import export_hf, gather_state_dict
from soaes.train import checkpoints as ckpt
from soaes.train.console import route_worker_logs
from soaes.train.data import collate_cpt, collate_sft, rows_to_micro_batches, start_early
from soaes.train.engine import configure_worker, create_engine, load_causal_lm
from soaes.train.loop import (
    LoopState,
    RunPlan,
    causal_lm_loss,
    emit,
    epoch_batches,
    evaluated_steps,
    run_eval,
    train_steps,
)
from soaes.train.metrics import all_reduce_sum, format_duration, plot_loss_curve

log = logging.getLogger(__name__)


def make_collate(plan: RunPlan):
    """The collate function of a CPT (packed blocks) or SFT (padded examples) plan; a
    distillation worker builds its own (:func:`soaes.train.distill.collate_distill`)."""
    if plan.collate == "cpt":
        return collate_cpt
    if plan.collate == "sft":
        return functools.partial(
            collate_sft, pad_id=plan.pad_id, pad_to_multiple=plan.pad_to_multiple
        )
    raise ValueError(f"collate {plan.collate!r}: not a CPT/SFT plan")


def resume_source(plan: RunPlan) -> Path | None:
    """Checkpoint to resume from: Ray's last reported one (automatic restart after a worker
    failure), else the run folder's ``latest`` when ``checkpoint.resume`` (manual resume)."""
    import ray.train

    reported = ray.train.get_checkpoint()
    if reported is not None:
        with reported.as_directory() as d:
            marker = ckpt.read_ray_marker(d)
        if marker and ckpt.read_manifest(marker["path"]) is not None:
            return Path(marker["path"])
    if reported is not None or plan.checkpoint.resume:
        found = ckpt.resolve_latest(plan.ckpt_dir)
        return found[0] if found else None
    return None


def resume(engine: Any, plan: RunPlan, src: Path | None) -> LoopState:
    """Restore engine, optimizer, schedule and data position from ``src`` (None: fresh)."""
    if src is None:
        return LoopState()
    manifest = ckpt.load_engine(engine, src)
    state = LoopState(
        step=manifest["step"], micro_index=manifest["micro_index"], tokens=manifest.get("tokens", 0)
    )
    emit(plan, {"event": "resume", "from": str(src), **state.as_dict()})
    return state


def peak_rss_mb(device: Any) -> list[float]:
    """Peak resident memory of every rank's process in MB (collective)."""
    import torch.distributed as dist

    world, rank = dist.get_world_size(), dist.get_rank()
    mine = [0.0] * world
    mine[rank] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return all_reduce_sum(mine, device)


def finish(engine: Any, plan: RunPlan, state: LoopState) -> None:
    """HF export (if configured), memory figures, ``end`` event, loss-curve PNG."""
    import torch.distributed as dist

    if plan.checkpoint.export_hf:
        sd = gather_state_dict(engine)
        if dist.get_rank() == 0:
            export_hf(
                engine.module,
                sd,
                Path(plan.run_dir) / "hf",
                plan.tokenizer_src,
                meta={"step": state.step, "tokens": state.tokens, **plan.run.export_meta()},
            )
        del sd
        dist.barrier()
    rss = peak_rss_mb(engine.device)
    end = {"event": "end", **state.as_dict(), "peak_rss_mb": rss, "peak_rss_mb_max": max(rss)}
    emit(plan, end, report=True)
    if dist.get_rank() == 0:
        wall = format_duration(time.time() - plan.submit_time)
        log.info(
            "[%s] done: step %d/%d, %s since submit",
            plan.run.name,
            state.step,
            plan.total_steps,
            wall,
        )
        plot_loss_curve(
            plan.metrics_path, Path(plan.run_dir) / "loss_curve.png", title=plan.run.name
        )


@dataclass
class WorkerStart:
    """A worker ready to train: what :func:`start_worker` hands to the training steps."""

    engine: Any
    state: LoopState
    shard: Any
    first_batches: Iterator[dict[str, Any]]
    evals: dict[str, list]
    world: int
    since_submit_s: dict[str, float]  # start-up marks, seconds after the driver's submit


def start_worker(plan: RunPlan, collate: Callable[[dict], dict[str, Any]]) -> WorkerStart:
    """The start of every training worker (CPT, SFT, distillation), in this order: set up the
    process, start streaming the train set at the resume position, build the DeepSpeed
    engine, resume it, cut the held-out sets into this rank's micro-batches."""
    import ray.train

    marks = {"worker_start_s": time.time()}
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    route_worker_logs(plan.run_dir, rank)
    configure_worker(plan.seed, plan.extensions_dir)
    # The data position is known from the manifest alone: start streaming the train set now,
    # while the model and engine are built.
    src = resume_source(plan)
    micro_index = (ckpt.read_manifest(src) or {}).get("micro_index", 0) if src else 0
    shard = ray.train.get_dataset_shard("train")
    first = start_early(epoch_batches(shard, plan, collate, micro_index))
    marks["data_started_s"] = time.time()
    model, keepalive = load_causal_lm(
        plan.model_path,
        plan.ds_config,
        plan.dtype,
        plan.activation_checkpointing,
        plan.trust_remote_code,
    )
    marks["model_loaded_s"] = time.time()
    engine = create_engine(model, plan.ds_config, plan.optim, plan.total_steps)
    del keepalive
    marks["engine_ready_s"] = time.time()
    state = resume(engine, plan, src)
    state.evaluated = evaluated_steps(plan)
    evals = {
        name: rows_to_micro_batches(rows, rank, world, plan.micro_batch_size, collate)
        for name, rows in plan.eval_rows.items()
    }
    since = {k: round(v - plan.submit_time, 3) for k, v in marks.items()}
    return WorkerStart(engine, state, shard, first, evals, world, since)


def announce_start(plan: RunPlan, w: WorkerStart) -> None:
    """The ``start`` record and (rank 0) the run's start line on the console."""
    import torch.distributed as dist

    zero = w.engine.zero_optimization_stage()
    body = {"event": "start", **w.state.as_dict(), "world_size": w.world, "zero_stage": zero}
    emit(plan, {**body, **w.since_submit_s})
    if dist.get_rank() == 0:
        log.info(
            "[%s] start: step %d/%d, %d worker(s), ZeRO-%d, engine ready %.1f s after submit",
            plan.run.name,
            w.state.step,
            plan.total_steps,
            w.world,
            zero,
            w.since_submit_s["engine_ready_s"],
        )


def causal_lm_worker(config: dict[str, Any]) -> None:
    """Ray Train worker entry of CPT and SFT; ``config["plan"]`` is a :class:`RunPlan`."""
    plan: RunPlan = config["plan"]
    collate = make_collate(plan)
    w = start_worker(plan, collate)
    announce_start(plan, w)
    if w.state.step == 0 and plan.logging.eval_at_start:
        run_eval(w.engine, plan, w.state, w.evals, causal_lm_loss)
    state = train_steps(
        w.engine, plan, w.state, w.shard, collate, w.evals, causal_lm_loss, w.first_batches
    )
    finish(w.engine, plan, state)
