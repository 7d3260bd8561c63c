"""The args of the soaes Serve app (``serve_apps/*.yaml`` → ``soaes.serve.app:build_app``).

Only what soaes decides is modelled here (models, speculation, hardware layout, limits,
scaling, API key); vLLM engine options pass straight through in ``engine_kwargs``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from soaes.config.base import StrictModel
from soaes.config.inference import engine_from_kwargs

# Engine options that soaes sets from its own fields: setting them in engine_kwargs too
# would make two sources of truth.
RESERVED_ENGINE_KWARGS = (
    "model",
    "tokenizer",
    "speculative_config",
    "tensor_parallel_size",
    "trust_remote_code",
    "disable_log_stats",
)


class SpeculationConfig(StrictModel):
    """vLLM speculative decoding inside each target replica: a separate draft model
    (``draft_model``) or an EAGLE-3 head on the target's hidden states (``eagle3``)."""

    method: Literal["draft_model", "eagle3"] | None = Field(
        default=None,
        description="vLLM speculative method; null: the one recorded in "
        "<distill_dir>/spec_decode.json (the measured winner), else draft_model.",
    )
    draft: str | None = Field(
        default=None,
        description="Draft model (draft_model) or EAGLE-3 head folder (eagle3): preset handle "
        "(tiny/draft), folder or hub id; null takes the 'draft' recorded in "
        "<distill_dir>/spec_decode.json.",
    )
    distill_dir: str | None = Field(
        default=None,
        description="Output folder of the distillation step; its spec_decode.json gives "
        "num_speculative_tokens (and the draft when 'draft' is null).",
    )
    num_speculative_tokens: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Tokens proposed per step when no distill_dir is given (the measured k wins).",
    )
    draft_tensor_parallel_size: int | None = Field(
        default=None,
        ge=1,
        description="TP degree of the draft (GPU; vLLM default: the target's). 1 keeps a small "
        "draft on one GPU of the replica's bundle.",
    )

    @model_validator(mode="after")
    def _check(self) -> SpeculationConfig:
        if self.distill_dir is None and self.num_speculative_tokens is None:
            raise ValueError("set num_speculative_tokens or distill_dir (its spec_decode.json)")
        if self.distill_dir is None and self.draft is None:
            raise ValueError("set draft, or distill_dir whose spec_decode.json names the draft")
        return self


class AutoscalingConfig(StrictModel):
    """Serve autoscaling of the LLM deployment (one replica = target + draft engine)."""

    min_replicas: int = Field(default=1, ge=0, description="Replicas kept at all times.")
    max_replicas: int = Field(default=1, ge=1, description="Upper bound of replicas.")
    target_ongoing_requests: float = Field(
        default=8, gt=0, description="Ongoing requests per replica that autoscaling aims for."
    )
    upscale_delay_s: float = Field(default=10, ge=0, description="Sustained load before adding.")
    downscale_delay_s: float = Field(default=300, ge=0, description="Idle time before removing.")

    @model_validator(mode="after")
    def _check(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})"
            )
        return self


class DeploymentLimits(StrictModel):
    """Backpressure: a bounded number of requests per replica, the rest answered 503 at once."""

    max_ongoing_requests: int = Field(
        default=16, ge=1, description="Requests a replica runs concurrently (vLLM batches them)."
    )
    max_queued_requests: int = Field(
        default=32,
        ge=1,
        description="Requests waiting for a replica; beyond it the caller gets 503 immediately.",
    )
    autoscaling: AutoscalingConfig = Field(
        default_factory=AutoscalingConfig, description="Replica autoscaling."
    )
    health_check_period_s: float = Field(
        default=10, gt=0, description="Replica health check period."
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20, ge=0, description="Time a stopping replica gets to finish its requests."
    )

    @model_validator(mode="after")
    def _check(self) -> DeploymentLimits:
        if self.autoscaling.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(
                "autoscaling.target_ongoing_requests must not exceed "
                "max_ongoing_requests (replicas would never look loaded)"
            )
        return self


class ServeAppConfig(StrictModel):
    """Args of ``soaes.serve.app:build_app``: one OpenAI-compatible vLLM app."""

    model_id: str = Field(description="Model name clients send in 'model' and see in /v1/models.")
    target: str = Field(
        description="Target model: preset handle (tiny/target, smollm2/base), a pipeline output "
        "folder (with config.json, or its hf/ export), or a hub id / mounted path on a cluster."
    )
    tokenizer: str | None = Field(default=None, description="Tokenizer when not the target's.")
    speculation: SpeculationConfig | None = Field(
        default=None, description="Draft-model speculation; null serves the target alone."
    )
    accelerator: Literal["cpu", "gpu"] = Field(
        default="cpu", description="cpu: vLLM's CPU build; gpu: one bundle per TP rank."
    )
    accelerator_type: str | None = Field(
        default=None, description="GPU type to schedule on (e.g. H100, A100); gpu only."
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="TP degree of the target.")
    cpus_per_worker: float = Field(
        default=1, gt=0, description="CPUs in each placement-group bundle (one bundle per TP rank)."
    )
    placement_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = Field(
        default="STRICT_PACK",
        description="STRICT_PACK keeps a replica's TP ranks (target + draft) on one node.",
    )
    kv_cache_space_gib: float | None = Field(
        default=1, gt=0, description="CPU only: VLLM_CPU_KVCACHE_SPACE for the engine (GiB)."
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM engine arguments passed through (max_model_len, dtype, enforce_eager, "
        "seed, ...); the keys soaes models are checked against "
        ":class:`soaes.config.inference.EngineConfig`, only the keys set here reach the "
        "engine. Model, speculation and TP come from the fields above.",
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="Extra environment of the engine replicas."
    )
    trust_remote_code: bool = Field(default=False, description="Allow checkpoint code. Off.")
    deployment: DeploymentLimits = Field(
        default_factory=DeploymentLimits, description="Backpressure limits and autoscaling."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of an environment variable holding the API key; when set, requests "
        "without 'Authorization: Bearer <key>' get 401. The key itself never goes in YAML.",
    )
    max_request_bytes: int = Field(
        default=1_000_000, ge=1024, description="Larger request bodies get 413 before parsing."
    )
    ingress_num_cpus: float = Field(
        default=0.5, ge=0, description="Logical CPUs reserved by each HTTP ingress replica."
    )

    @field_validator("engine_kwargs")
    @classmethod
    def _no_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & set(RESERVED_ENGINE_KWARGS))
        if clash:
            raise ValueError(
                f"{clash} are set by soaes' own fields (target, tokenizer, "
                "speculation, tensor_parallel_size, trust_remote_code); remove them"
            )
        engine_from_kwargs(v)  # the shared engine schema: dtype, max_model_len, ... checked
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(
                f"{v!r} is not an environment variable name (the key itself "
                "must not be written in the config)"
            )
        return v

    @model_validator(mode="after")
    def _check(self) -> ServeAppConfig:
        if self.accelerator_type and self.accelerator != "gpu":
            raise ValueError("accelerator_type needs accelerator: gpu")
        if self.accelerator == "cpu" and self.tensor_parallel_size > 1:
            raise ValueError("tensor_parallel_size > 1 needs accelerator: gpu")
        return self
