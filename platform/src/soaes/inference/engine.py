"""The offline (in-process) vLLM engine used by eval, acceptance, on-policy data and the
serving benchmark's reference."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from soaes.config.inference import EngineConfig

IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def new_llm(kv_cache_space_gib: float | None = None, **kwargs: Any) -> Any:
    """``vllm.LLM(**kwargs)`` for offline work (eval, acceptance, on-policy data, references).

    The engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless the
    environment already sets it): a batch job gains nothing from vLLM's separate core
    process, and spawning it re-imports torch and vLLM: about 33 s per engine against 3 s
    in-process for the tiny model on this machine, the same greedy tokens. Serve replicas
    keep vLLM's default. ``VLLM_CPU_KVCACHE_SPACE`` (required on CPU) is
    ``kv_cache_space_gib`` when given, else the environment's, else 1 GiB.
    Build it inside a function, never at import time (ENVIRONMENT.md).
    """
    os.environ.setdefault(IN_PROCESS_ENV, "0")
    if kv_cache_space_gib:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{kv_cache_space_gib:g}"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    return LLM(**kwargs)


def engine_llm(model: str, engine: EngineConfig, **kwargs: Any) -> Any:
    """``vllm.LLM`` of ``model`` with an :class:`EngineConfig` (plus ``kwargs``, e.g. the
    tokenizer or a speculative config), built by :func:`new_llm`."""
    args = engine.llm_kwargs() | kwargs
    return new_llm(kv_cache_space_gib=engine.kv_cache_space_gib, model=model, **args)


def close_llm(llm: Any) -> None:
    """Stop the engine's core process now, so the CPU and memory are free for what follows."""
    try:
        llm.llm_engine.engine_core.shutdown()
    finally:
        del llm
        gc.collect()


def generate_one(llm: Any, prompt: str, max_tokens: int, ignore_eos: bool = False):
    """One greedy generation: (text, generated tokens, seconds)."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos)
    t0 = time.perf_counter()
    out = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0]
    return out.text, len(out.token_ids), time.perf_counter() - t0


def generate_one_by_one(
    llm: Any, prompts: list[str], max_tokens: int
) -> tuple[list[str], list[int], float]:
    """Greedy single-stream generation, one prompt after the other (as a lone HTTP client).

    Returns:
        The texts, the generated token counts and the total seconds.
    """
    rows = [generate_one(llm, p, max_tokens) for p in prompts]
    return [r[0] for r in rows], [r[1] for r in rows], sum(r[2] for r in rows)
