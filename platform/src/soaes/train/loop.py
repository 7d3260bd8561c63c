"""The training loop run by every Ray Train worker: micro-steps, evaluation, checkpoints,
reports and the fault-injection hook.

:func:`train_steps` is generic over the loss: it takes ``loss_fn(engine, batch) -> loss``, so a
distillation loop (teacher forward inside ``loss_fn``) reuses it unchanged. The causal-LM
loss of CPT/SFT is :func:`causal_lm_loss`.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soaes.telemetry as prom
from soaes.config.train import CheckpointSpec, LoggingSpec, OptimSpec
from soaes.train import checkpoints as ckpt
from soaes.train.data import (
    IGNORE_INDEX,
    batch_fingerprint,
    batch_tokens,
    data_position,
    iter_micro_batches,
)
from soaes.train.metrics import (
    all_reduce_sum,
    append_jsonl,
    metric_tags,
    mfu,
    perplexity,
    progress_line,
)

log = logging.getLogger(__name__)

LossFn = Callable[[Any, dict[str, Any]], Any]
FAULT_MARKER = ".fault_injected"


@dataclass(frozen=True)
class RunPlan:
    """Everything a worker needs, resolved on the driver (picklable; sent as loop config)."""

    run_dir: str
    model_path: str
    tokenizer_src: str | None
    dtype: str
    trust_remote_code: bool
    activation_checkpointing: bool
    ds_config: dict[str, Any]
    optim: OptimSpec
    micro_batch_size: int
    grad_accum_steps: int
    total_steps: int
    micro_per_epoch: int
    collate: str
    pad_id: int
    checkpoint: CheckpointSpec
    logging: LoggingSpec
    eval_rows: dict[str, dict[str, list]] = field(default_factory=dict)  # set -> held-out rows
    pad_to_multiple: int = 8
    shuffle_buffer_rows: int = 0
    seed: int = 0
    fail_at_step: int | None = None
    fail_rank: int = 1
    extensions_dir: str | None = None
    submit_time: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ckpt_dir(self) -> Path:
        """The run's ``checkpoints/`` folder."""
        return Path(self.run_dir) / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl``."""
        return Path(self.run_dir) / "metrics.jsonl"


@dataclass
class LoopState:
    """Training position; saved in every checkpoint manifest."""

    step: int = 0
    micro_index: int = 0  # global micro-batches consumed (the data position)
    tokens: int = 0  # non-pad input tokens consumed, all ranks

    def as_dict(self) -> dict[str, int]:
        """JSON-able form for manifests and events."""
        return {"step": self.step, "micro_index": self.micro_index, "tokens": self.tokens}


@dataclass
class _Window:
    """Sums over the current log interval (this rank)."""

    loss_x_tokens: float = 0.0
    loss_tokens: int = 0
    tokens: int = 0
    steps: int = 0
    start: float = field(default_factory=time.time)
    fingerprints: dict[int, list[str]] = field(default_factory=dict)


def causal_lm_loss(engine: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over label tokens != -100 (HF's shifted loss)."""
    batch = {k: v.to(engine.device) for k, v in batch.items()}
    return engine(**batch).loss


def _loss_tokens(batch: dict[str, Any]) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def evaluate(
    engine: Any, sets: dict[str, list[dict[str, Any]]], loss_fn: LossFn
) -> dict[str, float]:
    """Token-weighted loss and perplexity of each held-out set over all ranks (collective)."""
    import torch

    out: dict[str, float] = {}
    engine.eval()
    with torch.no_grad():
        for name, batches in sets.items():
            tot, n = 0.0, 0
            for b in batches:
                k = _loss_tokens(b)
                tot += float(loss_fn(engine, b)) * k
                n += k
            tot, n = all_reduce_sum([tot, n], engine.device)
            if n:
                out[f"{name}/loss"] = tot / n
                out[f"{name}/ppl"] = perplexity(tot / n)
    engine.train()
    return out


def _is_rank0() -> bool:
    import torch.distributed as dist

    return dist.get_rank() == 0


def emit(
    plan: RunPlan,
    record: dict[str, Any],
    checkpoint_path: Path | None = None,
    state: dict[str, Any] | None = None,
    report: bool = True,
) -> None:
    """Log a record (rank 0: metrics.jsonl) and send it to ``ray.train.report`` (every rank,
    so the call counts match; rank 0 attaches the checkpoint marker)."""
    import ray.train

    record = {"time": round(time.time(), 3), **record}
    if _is_rank0():
        append_jsonl(plan.metrics_path, record)
    if not report:
        return
    metrics = {k: v for k, v in record.items() if isinstance(v, int | float)}
    if checkpoint_path is not None and _is_rank0():
        with tempfile.TemporaryDirectory() as tmp:
            ckpt.write_ray_marker(tmp, checkpoint_path, state or {})
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_dir_name=checkpoint_path.name,
            )
    else:
        ray.train.report(metrics)


def save_checkpoint(engine: Any, plan: RunPlan, state: LoopState, metrics: dict[str, Any]) -> None:
    """Atomic DeepSpeed save + a ``checkpoint`` event reported with the Ray marker."""
    body = state.as_dict()
    path = ckpt.save_engine(engine, plan.ckpt_dir, state.step, body, plan.checkpoint.keep_last)
    emit(plan, {"event": "checkpoint", **body, **metrics}, checkpoint_path=path, state=body)


def _train_record(
    engine: Any, plan: RunPlan, state: LoopState, win: _Window, lr: float, n_params: int
) -> dict[str, Any]:
    loss_sum, loss_n, tokens = all_reduce_sum(
        [win.loss_x_tokens, win.loss_tokens, win.tokens], engine.device
    )
    elapsed = max(time.time() - win.start, 1e-9)
    gnorm = engine.get_global_grad_norm()
    rec = {
        "event": "train",
        "step": state.step,
        "loss": loss_sum / max(loss_n, 1),
        "lr": lr,
        "grad_norm": float(gnorm) if gnorm is not None else float("nan"),
        "tokens_per_s": tokens / elapsed,
        "step_time_s": elapsed / max(win.steps, 1),
        "tokens": state.tokens + int(tokens),
    }
    world = engine.world_size if hasattr(engine, "world_size") else 1
    rec["mfu"] = mfu(rec["tokens_per_s"], n_params, world, plan.logging.peak_tflops_per_device)
    if plan.logging.trace_batches:
        rec["batches"] = {str(k): v for k, v in win.fingerprints.items()}
    state.tokens += int(tokens)
    return rec


def publish_train(plan: RunPlan, rec: dict[str, Any]) -> None:
    """Rank 0: a ``train`` record to soaes' Prometheus gauges (never raises)."""
    run, stage = metric_tags(plan.meta)
    values = (rec["step"], rec["loss"], rec["tokens_per_s"], rec["lr"])
    prom.try_publish(prom.publish_train_step, run, stage, *values)


def _maybe_fail(plan: RunPlan, step: int) -> None:
    """Fault-injection hook: the chosen rank dies hard once per run folder."""
    import torch.distributed as dist

    if plan.fail_at_step != step or dist.get_rank() != plan.fail_rank:
        return
    marker = Path(plan.run_dir) / FAULT_MARKER
    if marker.exists():
        return
    marker.write_text(f"rank {plan.fail_rank} exited after step {step}\n")
    log.warning("fault injection: rank %d exits after step %d", plan.fail_rank, step)
    os._exit(1)


def _on_step(
    engine: Any,
    plan: RunPlan,
    state: LoopState,
    win: _Window,
    lr: float,
    n_params: int,
    evals: dict[str, list],
    loss_fn: LossFn,
) -> _Window:
    """After each optimizer step: log/report, evaluate, checkpoint, fault hook."""
    lg, ck = plan.logging, plan.checkpoint
    last = state.step >= plan.total_steps
    metrics: dict[str, Any] = {}
    if state.step % lg.log_every_steps == 0 or last or state.step == 1:
        rec = _train_record(engine, plan, state, win, lr, n_params)
        if _is_rank0():
            log.info(
                "[%s] %s", plan.meta.get("name", "train"), progress_line(rec, plan.total_steps)
            )
            publish_train(plan, rec)
        emit(plan, rec)
        metrics = rec
    t_other = time.time()
    if evals and ((lg.eval_every_steps and state.step % lg.eval_every_steps == 0) or last):
        emit(plan, {"event": "eval", "step": state.step, **evaluate(engine, evals, loss_fn)})
    if (ck.every_steps and state.step % ck.every_steps == 0) or (last and ck.at_end):
        save_checkpoint(engine, plan, state, {"loss": metrics.get("loss", float("nan"))})
    _maybe_fail(plan, state.step)
    # Eval/checkpoint time is not training time: tokens/s and step time leave it out.
    if metrics:
        return _Window()
    win.start += time.time() - t_other
    return win


def epoch_batches(
    shard: Any, plan: RunPlan, collate: Callable[[dict], dict[str, Any]], micro_index: int
) -> Iterator[dict[str, Any]]:
    """This rank's micro-batches from global micro-batch ``micro_index`` to the epoch's end."""
    import ray.train

    ctx = ray.train.get_context()
    epoch, skip = data_position(micro_index, plan.micro_per_epoch)
    batches = iter_micro_batches(
        shard,
        ctx.get_world_rank(),
        ctx.get_world_size(),
        plan.micro_batch_size,
        skip,
        collate,
        plan.shuffle_buffer_rows,
        plan.seed + epoch,
    )
    return itertools.islice(batches, plan.micro_per_epoch - skip)


def train_steps(
    engine: Any,
    plan: RunPlan,
    state: LoopState,
    shard: Any,
    collate: Callable[[dict], dict[str, Any]],
    evals: dict[str, list],
    loss_fn: LossFn = causal_lm_loss,
    first_batches: Iterator[dict[str, Any]] | None = None,
) -> LoopState:
    """Run optimizer steps from ``state`` to ``plan.total_steps``.

    Each epoch streams the ordered dataset and skips the global micro-batches already
    consumed (:func:`epoch_batches`), so a resumed run continues exactly where its checkpoint
    stopped. ``first_batches`` (e.g. from :func:`soaes.train.data.start_early`) replaces the
    first epoch's iterator.
    """
    n_params = sum(p.numel() for p in engine.module.parameters())
    accum, win, first = plan.grad_accum_steps, _Window(), True
    while state.step < plan.total_steps:
        batches = first_batches or epoch_batches(shard, plan, collate, state.micro_index)
        first_batches, consumed = None, 0
        for batch in batches:
            consumed += 1
            if plan.logging.trace_batches:
                win.fingerprints.setdefault(state.step + 1, []).append(batch_fingerprint(batch))
            lr = engine.get_lr()[0]
            loss = loss_fn(engine, batch)
            engine.backward(loss)
            engine.step()
            n_in, n_loss = batch_tokens(batch)[0], _loss_tokens(batch)
            win.loss_x_tokens += float(loss) * n_loss
            win.loss_tokens += n_loss
            win.tokens += n_in
            state.micro_index += 1
            if state.micro_index % accum:
                continue
            state.step += 1
            win.steps += 1
            if first:
                first = False
                emit(
                    plan,
                    {
                        "event": "first_step",
                        "step": state.step,
                        "since_submit_s": time.time() - plan.submit_time,
                    },
                    report=False,
                )
            win = _on_step(engine, plan, state, win, lr, n_params, evals, loss_fn)
            if state.step >= plan.total_steps:
                break
        if consumed == 0:
            raise RuntimeError(f"train data yielded no batch at micro-batch {state.micro_index}")
    return state
