"""The training loop run by every Ray Train worker: micro-steps, evaluation, checkpoints,
reports and the fault-injection hook.

:func:`train_steps` is generic over the loss: it takes ``loss_fn(engine, batch) -> loss``, so a
distillation loop (teacher forward inside ``loss_fn``) reuses it unchanged. The causal-LM
loss of CPT/SFT is :func:`causal_lm_loss`.

What a step costs beyond forward, backward and the optimizer is kept near zero:

- no host sync between logging steps: the loss and token counts of a log interval are added
  up as tensors (:class:`_Window`) and read once, with one collective, at the logging step;
- ``ray.train.report`` only with a checkpoint, at the end, and every
  ``logging.report_every_steps`` if asked: each report is a cross-worker barrier through Ray
  and waits for Ray Train's controller, which takes one result per worker per poll (2 s);
- ``metrics.jsonl``, the progress line and the Prometheus gauges only at logging steps.
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
from soaes.train import checkpoints as ckpt
from soaes.train.data import batch_fingerprint, data_position, iter_micro_batches, token_counts
from soaes.train.metrics import all_reduce_sum, append_jsonl, mfu, perplexity, progress_line
from soaes.train.plan import RunPlan

__all__ = ["LoopState", "RunPlan", "causal_lm_loss", "emit", "evaluate", "train_steps"]

log = logging.getLogger(__name__)

LossFn = Callable[[Any, dict[str, Any]], Any]
FAULT_MARKER = ".fault_injected"


@dataclass
class LoopState:
    """Training position; saved in every checkpoint manifest."""

    step: int = 0
    micro_index: int = 0  # global micro-batches consumed (the data position)
    tokens: int = 0  # non-pad input tokens consumed, all ranks
    # Steps already evaluated in this run folder (an earlier attempt's records included):
    # a restarted run does not evaluate them again. Not saved in manifests.
    evaluated: set[int] = field(default_factory=set)

    def as_dict(self) -> dict[str, int]:
        """JSON-able form for manifests and events."""
        return {"step": self.step, "micro_index": self.micro_index, "tokens": self.tokens}


@dataclass
class _Window:
    """Sums over the current log interval (this rank), kept as tensors so that adding a
    micro-step never waits for the device; :func:`_train_record` reads them once."""

    loss_sum: Any = 0.0  # sum of loss x loss tokens (a tensor on the loss's device once added)
    counts: Any = 0  # int64 CPU tensor [loss tokens, input tokens] once added
    steps: int = 0
    start: float = field(default_factory=time.time)
    fingerprints: dict[int, list[str]] = field(default_factory=dict)

    def add(self, loss: Any, counts: Any) -> None:
        """Add one micro-batch: its mean loss and its :func:`token_counts` (no host sync)."""
        self.loss_sum = self.loss_sum + loss.detach().double() * counts[0]
        self.counts = self.counts + counts

    def totals(self, device: Any) -> list[float]:
        """``[loss x tokens, loss tokens, input tokens]`` summed over all ranks: one
        collective and one host sync (the logging step's)."""
        import torch

        loss = torch.as_tensor(self.loss_sum, dtype=torch.float64, device=device).reshape(1)
        counts = torch.zeros(2) if isinstance(self.counts, int) else self.counts
        counts = counts.to(device=device, dtype=torch.float64)
        return all_reduce_sum(torch.cat((loss, counts)), device)


def causal_lm_loss(engine: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over label tokens != -100 (HF's shifted loss)."""
    batch = {k: v.to(engine.device, non_blocking=True) for k, v in batch.items()}
    return engine(**batch).loss


def evaluate(
    engine: Any, sets: dict[str, list[dict[str, Any]]], loss_fn: LossFn
) -> dict[str, float]:
    """Token-weighted loss and perplexity of each held-out set over all ranks (collective)."""
    import torch

    out: dict[str, float] = {}
    engine.eval()
    with torch.no_grad():
        for name, batches in sets.items():
            win = _Window()
            for b in batches:
                win.add(loss_fn(engine, b), token_counts(b))
            tot, n, _ = win.totals(engine.device)
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
    report: bool = False,
) -> None:
    """Log a record (rank 0: metrics.jsonl); with ``report`` or a checkpoint, also send it to
    ``ray.train.report`` (every rank must then call, so the call counts match; rank 0
    attaches the checkpoint marker)."""
    import ray.train

    record = {"time": round(time.time(), 3), **record}
    if _is_rank0():
        append_jsonl(plan.metrics_path, record)
    if not report and checkpoint_path is None:
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


def evaluated_steps(plan: RunPlan) -> set[int]:
    """Steps with an ``eval`` record in the run's metrics.jsonl (earlier attempts included),
    read by rank 0 and shared with every rank (collective), so all ranks skip the same ones."""
    import torch.distributed as dist

    from soaes.train.metrics import read_jsonl

    box: list[Any] = [None]
    if dist.get_rank() == 0:
        recs = read_jsonl(plan.metrics_path)
        box[0] = {int(r["step"]) for r in recs if r.get("event") == "eval"}
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    return set(box[0])


def run_eval(
    engine: Any, plan: RunPlan, state: LoopState, evals: dict[str, list], loss_fn: LossFn
) -> None:
    """Evaluate the held-out sets at ``state.step`` and log an ``eval`` record, unless this
    step was evaluated already (a restarted attempt re-running it): one evaluation per step."""
    if not evals or state.step in state.evaluated:
        return
    emit(plan, {"event": "eval", "step": state.step, **evaluate(engine, evals, loss_fn)})
    state.evaluated.add(state.step)


def _train_record(
    engine: Any, plan: RunPlan, state: LoopState, win: _Window, lr: float, n_params: int
) -> dict[str, Any]:
    """The ``train`` record of a log interval: the interval's one collective and host sync."""
    loss_sum, loss_n, tokens = win.totals(engine.device)
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
    run, stage = plan.run.metric_tags()
    values = (rec["step"], rec["loss"], rec["tokens_per_s"], rec["lr"])
    prom.try_publish(prom.publish_train_step, run, stage, *values)


def _maybe_fail(plan: RunPlan, step: int) -> None:
    """Fault-injection hook: the chosen rank dies hard once per run folder."""
    if plan.fail_at_step != step:
        return
    import torch.distributed as dist

    if dist.get_rank() != plan.fail_rank:
        return
    marker = Path(plan.run_dir) / FAULT_MARKER
    if marker.exists():
        return
    marker.write_text(f"rank {plan.fail_rank} exited after step {step}\n")
    log.warning("fault injection: rank %d exits after step %d", plan.fail_rank, step)
    os._exit(1)


def _every(n: int, step: int) -> bool:
    return bool(n) and step % n == 0


def _log_interval(
    engine: Any, plan: RunPlan, state: LoopState, win: _Window, lr: float, n_params: int
) -> dict[str, Any]:
    """The logging step: one ``train`` record (rank 0: metrics.jsonl, progress line,
    Prometheus), sent to Ray Train every ``logging.report_every_steps``."""
    rec = _train_record(engine, plan, state, win, lr, n_params)
    if _is_rank0():
        log.info("[%s] %s", plan.run.name, progress_line(rec, plan.total_steps))
        publish_train(plan, rec)
    emit(plan, rec, report=_every(plan.logging.report_every_steps, state.step))
    return rec


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
    """After each optimizer step: log (at logging steps only), evaluate, checkpoint, fault
    hook. Between logging steps nothing here reads a tensor."""
    lg, ck = plan.logging, plan.checkpoint
    last = state.step >= plan.total_steps
    rec: dict[str, Any] = {}
    if _every(lg.log_every_steps, state.step) or last or state.step == 1:
        rec = _log_interval(engine, plan, state, win, lr, n_params)
    t_other = time.time()
    if _every(lg.eval_every_steps, state.step) or last:
        run_eval(engine, plan, state, evals, loss_fn)
    if _every(ck.every_steps, state.step) or (last and ck.at_end):
        save_checkpoint(engine, plan, state, {"loss": rec.get("loss", float("nan"))})
    _maybe_fail(plan, state.step)
    # Eval/checkpoint time is not training time: tokens/s and step time leave it out.
    if rec:
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


def micro_step(engine: Any, batch: dict[str, Any], loss_fn: LossFn, win: _Window) -> None:
    """Forward, backward and (at the accumulation boundary, DeepSpeed decides) the optimizer
    step of one micro-batch; its loss and token counts go to ``win`` without a host sync."""
    loss = loss_fn(engine, batch)
    engine.backward(loss)
    engine.step()
    win.add(loss, token_counts(batch))


def _first_step(plan: RunPlan, state: LoopState) -> None:
    emit(
        plan,
        {
            "event": "first_step",
            "step": state.step,
            "since_submit_s": time.time() - plan.submit_time,
        },
    )


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
            micro_step(engine, batch, loss_fn, win)
            state.micro_index += 1
            if state.micro_index % accum:
                continue
            state.step += 1
            win.steps += 1
            if first:
                first = False
                _first_step(plan, state)
            win = _on_step(engine, plan, state, win, lr, n_params, evals, loss_fn)
            if state.step >= plan.total_steps:
                break
        if consumed == 0:
            raise RuntimeError(f"train data yielded no batch at micro-batch {state.micro_index}")
    return state
