"""The Serve app builder that ``serve_apps/*.yaml`` reference: ``soaes.serve.app:build_app``.

It is ``ray.serve.llm``'s OpenAI app (``build_openai_app``: an ``OpenAiIngress`` in front of
one ``LLMServer`` deployment running vLLM) with one change: the ingress's FastAPI app gets
:class:`~soaes.serve.guard.GuardMiddleware` (API key, body-size cap). ``build_openai_app``
has no hook for middleware, so the last steps of it are repeated here with the same Ray
helpers: the public ones of ``ray.serve.llm``, and two private ones from
:mod:`soaes.ray_private` (checked against Ray 2.60; tests/serve exercises every route).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from soaes.config.serve import ServeAppConfig
from soaes.ray_private import model_card, openai_fastapi_app
from soaes.serve.guard import GuardMiddleware, key_digest
from soaes.serve.llm import to_llm_config
from soaes.serve.models import ServeConfigError, resolve_models


def parse_args(args: dict[str, Any] | ServeAppConfig) -> ServeAppConfig:
    """Validate a Serve YAML's ``args`` into a :class:`ServeAppConfig`.

    Raises:
        ServeConfigError: ``args.<field.path>: message`` lines.
    """
    if isinstance(args, ServeAppConfig):
        return args
    try:
        return ServeAppConfig.model_validate(args or {})
    except ValidationError as e:
        lines = [
            f"args.{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()
        ]
        raise ServeConfigError("\n".join(lines)) from None


def api_key_digest(cfg: ServeAppConfig) -> str | None:
    """Digest of the key in ``$<api_key_env>``, read where the app is built; None if unset.

    Raises:
        ServeConfigError: the config names a variable that is unset or empty.
    """
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env, "").strip()
    if not key:
        raise ServeConfigError(
            f"args.api_key_env: environment variable {cfg.api_key_env} is "
            "not set or empty where the app is built"
        )
    return key_digest(key)


def build_openai_ingress(
    llm_config: Any, key_sha256: str | None, max_request_bytes: int, ingress_num_cpus: float
):
    """``build_openai_app`` for one model, with the guard middleware on its ingress."""
    from ray import serve
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    fastapi_app = openai_fastapi_app()  # ray.serve.llm's: error handling, CORS, metrics, ids
    # Added last, so it runs first: rejected requests never reach routing or the engine.
    fastapi_app.add_middleware(
        GuardMiddleware, key_sha256=key_sha256, max_request_bytes=max_request_bytes
    )
    ingress_cls = make_fastapi_ingress(OpenAiIngress, app=fastapi_app)
    options = OpenAiIngress.get_deployment_options([llm_config])
    options["ray_actor_options"] = {"num_cpus": ingress_num_cpus}
    model_id = llm_config.model_id
    return serve.deployment(ingress_cls, **options).bind(
        llm_deployments={model_id: build_llm_deployment(llm_config)},
        model_cards={model_id: model_card(model_id, llm_config)},
        lora_paths={},
    )


def build_app(args: dict[str, Any]):
    """Build the OpenAI-compatible vLLM app (target + optional draft) from YAML ``args``.

    Args:
        args: the ``args`` mapping of a Serve config application (see
            :class:`soaes.config.serve.ServeAppConfig`).

    Returns:
        The Serve ``Application`` (ingress bound to the LLM deployment).
    """
    cfg = parse_args(args)
    llm_config = to_llm_config(cfg, resolve_models(cfg))
    return build_openai_ingress(
        llm_config, api_key_digest(cfg), cfg.max_request_bytes, cfg.ingress_num_cpus
    )
