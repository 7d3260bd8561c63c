"""DeepSpeed engine setup inside a Ray Train worker.

Call order in any training worker (CPT, SFT, distillation)::

    configure_worker(seed)                      # env for the compiled-op cache, seeds
    model, keep = load_causal_lm(path, ds_cfg)   # keep `keep` alive (ZeRO-3 init hook)
    engine = create_engine(model, ds_cfg, optim, total_steps)

A distillation loop loads its frozen teacher with :func:`load_frozen` (no engine, no
optimizer) and trains the student through :func:`create_engine` as here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from soaes.config.train import OptimSpec
from soaes.train.ds_config import lr_multiplier

log = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def default_extensions_dir() -> str:
    """Where DeepSpeed's JIT-compiled C++ ops are cached: ``$TORCH_EXTENSIONS_DIR`` or
    ``$SOAES_CACHE/torch_extensions/<environment>`` (~/.cache/soaes/...), one folder per
    Python environment (:func:`environment_tag`)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    cache = os.environ.get("SOAES_CACHE") or str(Path.home() / ".cache" / "soaes")
    return str(Path(cache) / "torch_extensions" / environment_tag())


def environment_tag() -> str:
    """A short key of this Python environment (its prefix, torch and DeepSpeed versions).

    torch rebuilds a JIT op whenever its build command changes, and that command names the
    environment's include paths: two checkouts sharing one cache folder (a working copy and a
    CI clone) rebuilt each other's op, about 30 s at the next first engine start.
    """
    from importlib.metadata import PackageNotFoundError, version

    parts = [sys.prefix]
    for pkg in ("torch", "deepspeed"):
        try:
            parts.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} absent")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def prebuild_ops() -> str | None:
    """Compile (once) and load the DeepSpeed op every CPU engine needs: the shared-memory
    all-reduce (~40-60 s cold, ~1 s from the cache). Returns the op name, or None when the
    accelerator needs none. Run it once per machine/CI cache, outside timed or parallel runs,
    so that workers only ever load the cached build."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", default_extensions_dir())
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not deepspeed.ops.__compatible_ops__.get(builder.NAME, False):
        return None
    builder.load(verbose=False)
    return builder.absolute_name()


def configure_worker(seed: int, extensions_dir: str | None = None) -> None:
    """Per-worker process setup: the compiled-op cache folder and seeds (python, numpy, torch)."""
    os.environ["TORCH_EXTENSIONS_DIR"] = extensions_dir or default_extensions_dir()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_causal_lm(
    path: str,
    ds_config: dict[str, Any] | None = None,
    dtype: str = "float32",
    activation_checkpointing: bool = False,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load an HF causal LM for training.

    Under ZeRO-3 the weights are partitioned while loading (``HfDeepSpeedConfig`` makes
    ``from_pretrained`` build the model inside ``deepspeed.zero.Init``): a 72B model never
    materialises whole on one worker.

    Returns:
        ``(model, keepalive)``: hold ``keepalive`` until the engine exists (transformers keeps
        only a weak reference to the ZeRO-3 config).
    """
    import torch
    from transformers import AutoModelForCausalLM

    keepalive = None
    if ds_config and ds_config.get("zero_optimization", {}).get("stage") == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keepalive = HfDeepSpeedConfig(ds_config)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, _DTYPES[dtype]), trust_remote_code=trust_remote_code
    )
    model.config.use_cache = False  # no KV cache while training
    if activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, keepalive


def load_frozen(path: str, dtype: str = "float32", trust_remote_code: bool = False) -> Any:
    """A frozen model in eval mode (e.g. a distillation teacher): no grads, no engine."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, _DTYPES[dtype]), trust_remote_code=trust_remote_code
    )
    model.eval().requires_grad_(False)
    return model


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases and norm weights (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def create_engine(model: Any, ds_config: dict[str, Any], optim: OptimSpec, total_steps: int) -> Any:
    """``deepspeed.initialize`` with AdamW and the warmup + decay schedule.

    DeepSpeed reuses the process group Ray Train already created (gloo on CPU, NCCL on GPU).
    The optimizer is ``torch.optim.AdamW`` (fused on a GPU worker) unless ``ds_config`` names
    one (then DeepSpeed builds FusedAdam / DeepSpeedCPUAdam). The schedule is a ``LambdaLR`` stepped by the engine
    at every optimizer step and saved in its checkpoints.
    """
    import deepspeed
    import torch

    optimizer = None
    groups = _param_groups(model, optim.weight_decay)
    if "optimizer" not in ds_config:
        # Fused (one kernel for all tensors) on a GPU worker; torch's default on CPU.
        fused = True if torch.cuda.is_available() else None
        optimizer = torch.optim.AdamW(
            groups, lr=optim.lr, betas=optim.betas, eps=optim.eps, fused=fused
        )
    schedule = functools.partial(lr_multiplier, optim=optim, total_steps=total_steps)

    def make_scheduler(opt: Any) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        model_parameters=None if optimizer else groups,
        lr_scheduler=make_scheduler,
        config=ds_config,
    )
    return engine
