"""The one vLLM engine config: every offline engine (eval answers, acceptance, on-policy
distillation data, benchmarks) takes an :class:`EngineConfig`, and a Serve app's
``engine_kwargs`` are validated against the same fields.

soaes models only what it decides (dtype, context length, eager mode, TP, seed, CPU KV
cache); every other vLLM option passes straight through in ``engine_kwargs``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from soaes.config.base import StrictModel

# Keys of EngineConfig that are vLLM ``LLM``/engine arguments (the rest are soaes' own).
VLLM_FIELDS = ("dtype", "max_model_len", "enforce_eager", "tensor_parallel_size", "seed")


class EngineConfig(StrictModel):
    """vLLM engine settings (passed to ``vllm.LLM`` / the Serve engine as given)."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        default="float32", description="Weights dtype: float32 on CPU (bf16 is ~3x slower there)."
    )
    max_model_len: int = Field(default=1024, ge=16, description="Context length of the engine.")
    enforce_eager: bool = Field(
        default=True, description="Skip graph compilation: starts in ~20 s on CPU instead of ~80 s."
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="TP degree of the model.")
    seed: int = Field(default=0, description="Engine seed.")
    kv_cache_space_gib: float | None = Field(
        default=None,
        gt=0,
        description="CPU only: VLLM_CPU_KVCACHE_SPACE of the engine (GiB); null keeps the "
        "environment's (1 GiB when unset).",
    )
    actor_num_gpus: float = Field(
        default=0,
        ge=0,
        description="GPUs reserved by a Ray actor hosting this engine (on-policy generation "
        "on Ray Data); set it to tensor_parallel_size on a GPU cluster.",
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Further vllm.LLM / engine keyword arguments (e.g. gpu_memory_utilization, "
        "enable_prefix_caching), passed through as given.",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_extra(cls, data: Any) -> Any:
        # `extra` was the pass-through's name in distillation configs: still accepted.
        if isinstance(data, dict) and "extra" in data:
            if "engine_kwargs" in data:
                raise ValueError("set engine_kwargs only (extra is its old name)")
            data = {**data, "engine_kwargs": data["extra"]}
            del data["extra"]
        return data

    @model_validator(mode="after")
    def _no_shadowing(self) -> EngineConfig:
        clash = sorted(set(self.engine_kwargs) & set(type(self).model_fields))
        if clash:
            raise ValueError(f"engine_kwargs {clash}: set these as fields of the engine config")
        return self

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``."""
        return {k: getattr(self, k) for k in VLLM_FIELDS} | self.engine_kwargs


def engine_from_kwargs(kwargs: dict[str, Any]) -> EngineConfig:
    """An :class:`EngineConfig` from flat vLLM keyword arguments (a Serve app's
    ``engine_kwargs``): known keys become fields, the rest pass through."""
    known = {k: v for k, v in kwargs.items() if k in VLLM_FIELDS}
    rest = {k: v for k, v in kwargs.items() if k not in VLLM_FIELDS}
    return EngineConfig(**known, engine_kwargs=rest)
