"""Every Ray API soaes uses that Ray does not export publicly (checked against Ray 2.60).

Public Ray APIs are imported where they are used (``ray.serve.llm``'s ``LLMConfig``,
``build_llm_deployment``, ``ray.serve.llm.ingress``'s ``OpenAiIngress`` and
``make_fastapi_ingress``, ...). The few private ones are imported here only, each behind a
small function that says why no public API does it; ``tests/test_ray_private.py`` imports
every one of them, so a Ray upgrade that moves one fails there, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (module, attribute) of every private Ray API used below: the test imports each.
PRIVATE_APIS: tuple[tuple[str, str], ...] = (
    ("ray.llm._internal.serve.core.ingress.ingress", "init"),
    ("ray.llm._internal.serve.core.configs.openai_api_models", "to_model_metadata"),
    ("ray._common.utils", "import_attr"),
    ("ray.serve._private.api", "call_user_app_builder_with_args_if_necessary"),
    ("ray._private.state", "actors"),
    (
        "ray._private.authentication.authentication_token_setup",
        "maybe_enable_token_auth_if_token_available",
    ),
    ("ray.autoscaler._private.util", "prepare_config"),
    ("ray.autoscaler._private.util", "validate_config"),
    ("ray._private.ray_logging", "global_worker_stdstream_dispatcher"),
    ("ray._private.worker", "print_to_stdstream"),
    ("ray._private.worker", "global_worker"),
)
# Private classes named (as strings) by ray_data_logging_config: the test imports each too.
RAY_DATA_LOG_CLASSES: tuple[tuple[str, str], ...] = (
    ("ray.data._internal.logging", "SessionFileHandler"),
    ("ray.data._internal.logging", "HiddenRecordFilter"),
    ("ray._private.log", "PlainRayHandler"),
)


def openai_fastapi_app() -> Any:
    """``ray.serve.llm``'s FastAPI app (error handling, CORS, metrics, request ids).

    ``build_openai_app`` creates it internally and has no hook for middleware; soaes adds
    its guard to this app and passes it to the public ``make_fastapi_ingress``.
    """
    from ray.llm._internal.serve.core.ingress.ingress import init

    return init()


def model_card(model_id: str, llm_config: Any) -> Any:
    """The ``/v1/models`` entry ``build_openai_app`` makes for an ``LLMConfig``."""
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata

    return to_model_metadata(model_id, llm_config)


def build_from_import_path(import_path: str, args: dict[str, Any]) -> Any:
    """Import a Serve config's ``import_path`` and call its builder with ``args``, exactly
    as ``serve deploy`` does (no public API builds an application without deploying it)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    return call_user_app_builder_with_args_if_necessary(import_attr(import_path), args)


def actor_table() -> dict[str, dict[str, Any]]:
    """The GCS actor table (actor id -> info with ``State``, ``ActorClassName``, ``Pid``).

    ``ray.util.state.list_actors`` gives the same through the dashboard, which the local
    clusters and tests here run without.
    """
    from ray._private.state import actors

    return actors()


def enable_token_auth_if_available() -> None:
    """Switch this process to token auth when a token is present, as Ray does itself for
    a cluster it finds (Ray reads the auth mode once; no public API refreshes it)."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def prepare_cluster_launcher_config(config: dict[str, Any]) -> dict[str, Any]:
    """A cluster-launcher (``ray up``) YAML filled in and validated by Ray's own code, which
    ``ray up`` runs but does not export."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def ray_data_logging_config(console_level: str = "WARNING") -> dict[str, Any]:
    """Ray Data's default logging config (``ray.data._internal.logging.DEFAULT_CONFIG`` of
    Ray 2.60) with the console handler at ``console_level``: everything still goes to the
    session's ``ray-data.log``; only the terminal is spared the per-second progress dumps.

    Ray Data reads a replacement config only from the file named by ``RAY_DATA_LOGGING_CONFIG``
    (no public API sets the console level); its handler classes are private.
    """
    fmt = "%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ray": {"format": fmt}},
        "filters": {"console_filter": {"()": "ray.data._internal.logging.HiddenRecordFilter"}},
        "handlers": {
            "file": {
                "class": "ray.data._internal.logging.SessionFileHandler",
                "formatter": "ray",
                "filename": "ray-data.log",
            },
            "console": {
                "class": "ray._private.log.PlainRayHandler",
                "formatter": "ray",
                "level": console_level,
                "filters": ["console_filter"],
            },
        },
        "loggers": {
            "ray.data": {"level": "DEBUG", "handlers": ["file", "console"], "propagate": False}
        },
    }


# Name under which ``ray.init(log_to_driver=True)`` registers its printer of worker output.
RAY_PRINT_LOGS_HANDLER = "ray_print_logs"


def filter_worker_output(keep: Callable[[str], bool]) -> str | None:
    """Print only the lines of forwarded worker output (every actor's, task's, raylet's)
    for which ``keep`` is true; all of it stays in the session's log files.

    Ray prints what workers write through one handler that ``ray.init`` registers on a
    private dispatcher; no public option filters it (``log_to_driver`` is all or nothing).
    Returns the session's log folder, or None when Ray does not forward worker output.
    """
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    from ray._private.worker import global_worker, print_to_stdstream

    if not any(name == RAY_PRINT_LOGS_HANDLER for name, _ in dispatcher.handlers):
        return None

    def printer(data: dict[str, Any]) -> None:
        lines = [line for line in data["lines"] if keep(line)]
        if lines:
            print_to_stdstream({**data, "lines": lines}, ignore_prefix=False)

    dispatcher.remove_handler(RAY_PRINT_LOGS_HANDLER)
    dispatcher.add_handler(RAY_PRINT_LOGS_HANDLER, printer)
    return global_worker.node.get_logs_dir_path()
