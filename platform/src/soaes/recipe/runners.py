"""Call the runner registered for a pipeline config's ``kind`` (see :mod:`soaes.config.pipeline`).

Used by ``soaes run`` and by the recipe's stages. Runners are imported on first use: a
``soaes run pipelines/data_cpt.yaml`` does not import DeepSpeed or vLLM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from soaes.config.pipeline import PIPELINES


def runner_of(kind: str) -> Callable[[Any], dict[str, Any] | None]:
    """The runner function registered for ``kind``."""
    if kind not in PIPELINES:
        raise KeyError(f"unknown pipeline kind {kind!r}; have: {', '.join(PIPELINES)}")
    module, func = PIPELINES[kind].runner.split(":")
    return getattr(importlib.import_module(module), func)


def run_pipeline(cfg: Any) -> dict[str, Any] | None:
    """Run a validated pipeline config with the runner of its ``kind``; return its summary."""
    return runner_of(cfg.kind)(cfg)
