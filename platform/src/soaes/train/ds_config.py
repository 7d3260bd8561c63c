"""Pure builders: the DeepSpeed JSON config and the learning-rate schedule.

Both are plain functions of the pydantic specs so they are unit-tested without DeepSpeed and
reused unchanged by every training mode (CPT, SFT, distillation).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from soaes.config.train import DeepSpeedSpec, OptimSpec


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def effective_zero_stage(ds: DeepSpeedSpec, world_size: int) -> int:
    """The ZeRO stage a run of ``world_size`` workers uses: ``ds.zero_stage``, except 0 for a
    single worker without offload (nothing to partition; ZeRO would only copy gradients into
    flat buffers) unless ``ds.zero_on_one_worker``."""
    offload = ds.offload_optimizer != "none" or ds.offload_param != "none"
    if world_size == 1 and not offload and not ds.zero_on_one_worker:
        return 0
    return ds.zero_stage


def build_ds_config(
    ds: DeepSpeedSpec,
    optim: OptimSpec,
    micro_batch_size: int,
    grad_accum_steps: int,
    world_size: int,
) -> dict[str, Any]:
    """The DeepSpeed config dict for ``deepspeed.initialize``.

    ``train_batch_size`` is left for DeepSpeed to derive (micro x accumulation x world size).

    Args:
        ds: engine options (ZeRO stage, precision, offload, ``extra`` pass-through keys).
        optim: AdamW settings; used only when DeepSpeed builds the optimizer itself.
        micro_batch_size: sequences per worker per micro-step.
        grad_accum_steps: micro-steps per optimizer step.
        world_size: training workers; the ZeRO stage is :func:`effective_zero_stage`.

    Returns:
        A JSON-able dict; ``ds.extra`` is deep-merged last so any engine key can be set.
    """
    stage = effective_zero_stage(ds, world_size)
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": True,
        "reduce_bucket_size": ds.reduce_bucket_size,
    }
    if ds.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": ds.offload_optimizer, "pin_memory": True}
    if ds.offload_param != "none":
        zero["offload_param"] = {"device": ds.offload_param, "pin_memory": True}
    if stage == 3:
        # Lets the HF export gather full weights on rank 0 (engine._zero3_consolidated_16bit_state_dict).
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum_steps,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        # soaes logs its own metrics; DeepSpeed's console prints would duplicate them.
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if optim.grad_clip is not None:
        cfg["gradient_clipping"] = optim.grad_clip
    if ds.optimizer == "deepspeed_adamw":
        cfg["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": optim.lr,
                "betas": list(optim.betas),
                "eps": optim.eps,
                "weight_decay": optim.weight_decay,
            },
        }
    return _deep_merge(cfg, ds.extra)


def warmup_steps(optim: OptimSpec, total_steps: int) -> int:
    """Warmup length in optimizer steps: ``warmup_steps``, else ``warmup_ratio`` of the run."""
    if optim.warmup_steps:
        return min(optim.warmup_steps, total_steps)
    return int(optim.warmup_ratio * total_steps)


def lr_multiplier(step: int, optim: OptimSpec, total_steps: int) -> float:
    """LR multiplier (of ``optim.lr``) before optimizer step ``step`` (0-based).

    Linear warmup from ~0 to 1, then cosine / linear decay to ``min_lr_ratio`` at
    ``total_steps``, or constant.
    """
    warm = warmup_steps(optim, total_steps)
    if step < warm:
        return (step + 1) / warm
    if optim.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / decay_steps)
    if optim.schedule == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * shape
