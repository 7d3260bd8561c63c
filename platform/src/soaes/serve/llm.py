"""Map a soaes Serve app config onto ``ray.serve.llm.LLMConfig`` (pure: no Ray, no files),
and build the in-process vLLM engine a replica would run (:func:`offline_llm`)."""

from __future__ import annotations

from typing import Any

from soaes.config.serve import ServeAppConfig
from soaes.inference.engine import new_llm
from soaes.serve.models import ResolvedModels


def speculative_config(cfg: ServeAppConfig, models: ResolvedModels) -> dict[str, Any] | None:
    """vLLM's ``speculative_config`` (draft_model or eagle3), or None without a draft."""
    if models.draft is None:
        return None
    spec: dict[str, Any] = {
        "method": models.method,
        "model": models.draft,
        "num_speculative_tokens": models.num_speculative_tokens,
    }
    if cfg.speculation and cfg.speculation.draft_tensor_parallel_size:
        spec["draft_tensor_parallel_size"] = cfg.speculation.draft_tensor_parallel_size
    return spec


def engine_kwargs(cfg: ServeAppConfig, models: ResolvedModels) -> dict[str, Any]:
    """The vLLM engine arguments of one replica: the passed-through ones plus soaes' own.

    The same dict drives the in-process vLLM reference of the tests and benchmark, so
    "same engine config" is true by construction.
    """
    kwargs = dict(cfg.engine_kwargs)
    kwargs.update(
        tensor_parallel_size=cfg.tensor_parallel_size, trust_remote_code=cfg.trust_remote_code
    )
    if models.tokenizer:
        kwargs["tokenizer"] = models.tokenizer
    spec = speculative_config(cfg, models)
    if spec:
        kwargs["speculative_config"] = spec
    return kwargs


def offline_llm(cfg: ServeAppConfig, models: ResolvedModels) -> Any:
    """In-process vLLM with exactly the engine config a Serve replica gets (speculation
    included): the reference that HTTP outputs are compared with and Serve's overhead is
    measured against. Built through :func:`soaes.inference.engine.new_llm`.
    """
    return new_llm(model=models.target, disable_log_stats=False, **engine_kwargs(cfg, models))


def placement_group_config(cfg: ServeAppConfig) -> dict[str, Any]:
    """One bundle per TP rank; the draft shares the target's bundles, so a replica's
    placement group holds the whole target + draft pair (STRICT_PACK: on one node)."""
    bundle: dict[str, float] = {"CPU": cfg.cpus_per_worker}
    if cfg.accelerator == "gpu":
        bundle["GPU"] = 1
    return {
        "bundles": [dict(bundle) for _ in range(cfg.tensor_parallel_size)],
        "strategy": cfg.placement_strategy,
    }


def deployment_config(cfg: ServeAppConfig) -> dict[str, Any]:
    """Serve options of the LLM deployment: backpressure, autoscaling, health checks."""
    d, a = cfg.deployment, cfg.deployment.autoscaling
    return {
        "max_ongoing_requests": d.max_ongoing_requests,
        "max_queued_requests": d.max_queued_requests,
        "health_check_period_s": d.health_check_period_s,
        "graceful_shutdown_timeout_s": d.graceful_shutdown_timeout_s,
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        },
        # The replica actor only relays requests; the engine's CPUs/GPUs are the bundles.
        "ray_actor_options": {"num_cpus": 0},
    }


def runtime_env(cfg: ServeAppConfig) -> dict[str, Any] | None:
    """Engine environment: vLLM's CPU KV-cache size (required on CPU) and extra env vars."""
    env = dict(cfg.env_vars)
    if cfg.accelerator == "cpu" and cfg.kv_cache_space_gib:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cfg.kv_cache_space_gib:g}")
    return {"env_vars": env} if env else None


def llm_config_dict(cfg: ServeAppConfig, models: ResolvedModels) -> dict[str, Any]:
    """The plain-data ``LLMConfig`` of the app (what ``ray.serve.llm`` validates)."""
    body: dict[str, Any] = {
        "model_loading_config": {"model_id": cfg.model_id, "model_source": models.target},
        "accelerator_config": {"kind": cfg.accelerator},
        "engine_kwargs": engine_kwargs(cfg, models),
        "placement_group_config": placement_group_config(cfg),
        "deployment_config": deployment_config(cfg),
        # vLLM's counters (spec decode included) go to Ray's metrics export as ray_vllm_*.
        "log_engine_metrics": True,
    }
    if models.tokenizer:
        body["model_loading_config"]["tokenizer_source"] = models.tokenizer
    if cfg.accelerator_type:
        body["accelerator_type"] = cfg.accelerator_type
    env = runtime_env(cfg)
    if env:
        body["runtime_env"] = env
    return body


def to_llm_config(cfg: ServeAppConfig, models: ResolvedModels):
    """Validate the app's LLM config with Ray's own model (``ray.serve.llm.LLMConfig``)."""
    from ray.serve.llm import LLMConfig

    return LLMConfig.model_validate(llm_config_dict(cfg, models))
