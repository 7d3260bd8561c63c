"""Deploy a Serve config file, report its state, take it down.

A Serve config file is Serve's own format (``ray.serve.schema.ServeDeploySchema``: the one
``serve run`` / ``serve deploy`` read); apps whose ``import_path`` is a soaes builder get
their ``args`` validated by soaes' config first, so a bad field fails before any Ray work.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from soaes.ray_private import actor_table, build_from_import_path
from soaes.serve.models import ServeConfigError

SOAES_BUILDER_PREFIX = "soaes.serve."
LOOPBACK = "127.0.0.1"


def load_serve_config(path: str | Path, overrides: list[str] | None = None):
    """Read a Serve config YAML, apply ``key.path=value`` overrides and validate it.

    Returns:
        The validated ``ServeDeploySchema``.

    Raises:
        ServeConfigError: missing file, bad YAML, or an invalid field (named with its path).
    """
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from soaes.config.loader import ConfigError, apply_overrides
    from soaes.serve.app import parse_args

    path = Path(path)
    if not path.is_file():
        raise ServeConfigError(f"{path}: Serve config file not found")
    try:
        data = apply_overrides(
            yaml.safe_load(path.read_text(encoding="utf-8")) or {}, overrides or []
        )
        schema = ServeDeploySchema.model_validate(data)
    except (yaml.YAMLError, ConfigError) as e:
        raise ServeConfigError(f"{path}: {e}") from e
    except ValidationError as e:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        ]
        raise ServeConfigError("\n".join(lines)) from None
    for i, app in enumerate(schema.applications):
        if app.import_path.startswith(SOAES_BUILDER_PREFIX):
            try:
                parse_args(app.args)
            except ServeConfigError as e:
                raise ServeConfigError(f"{path}: applications.{i} ({app.name}): {e}") from None
    return schema


def http_options(schema: Any) -> dict[str, Any]:
    """The file's HTTP options, bound to loopback unless the file names a host itself
    (Serve's schema would default to 0.0.0.0)."""
    opts = schema.http_options.model_dump(exclude_unset=True)
    opts.setdefault("host", LOOPBACK)
    return opts


def base_url(schema: Any) -> str:
    """``http://host:port`` of the Serve HTTP proxy described by the file."""
    opts = http_options(schema)
    host = LOOPBACK if opts["host"] in ("0.0.0.0", "::") else opts["host"]
    return f"http://{host}:{opts.get('port', 8000)}"


def build_application(app: Any):
    """Import an application's builder and call it with its args (as Serve does)."""
    return build_from_import_path(app.import_path, app.args or {})


def deploy(schema: Any) -> list[str]:
    """Start Serve (proxy on the file's host/port) and run every application until RUNNING.

    The applications are deployed together (``serve.run_many``): their replicas start side
    by side instead of one app after the other.

    Returns:
        The names of the deployed applications.
    """
    from ray import serve

    serve.start(proxy_location=schema.proxy_location, http_options=http_options(schema))
    serve.run_many(
        [
            serve.RunTarget(build_application(app), name=app.name, route_prefix=app.route_prefix)
            for app in schema.applications
        ]
    )
    return [app.name for app in schema.applications]


def app_status() -> dict[str, Any]:
    """Status of every Serve application: state, message, deployments and replica states."""
    from ray import serve

    out = {}
    for name, app in serve.status().applications.items():
        out[name] = {
            "status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "message": app.message,
            "deployments": {
                d: {
                    "status": str(getattr(s.status, "value", s.status)),
                    "replicas": {
                        str(getattr(k, "value", k)): v for k, v in s.replica_states.items()
                    },
                }
                for d, s in app.deployments.items()
            },
        }
    return out


def state_path() -> Path:
    """Where ``soaes serve up`` records the embedded cluster it owns."""
    from soaes.assets.fetch import cache_dir

    return cache_dir() / "serve" / "state.json"


def write_state(body: dict[str, Any]) -> Path:
    """Record the running embedded Serve cluster (address, URL, pid) for down/status."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def read_state() -> dict[str, Any] | None:
    """The recorded cluster if its owning process is still alive, else None."""
    path = state_path()
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(body["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return body


def clear_state(pid: int) -> None:
    """Remove the record if it belongs to ``pid``."""
    body = None
    try:
        body = json.loads(state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if body.get("pid") == pid:
        state_path().unlink(missing_ok=True)


def wait_while_apps_run(names: list[str], poll_s: float = 2.0) -> None:
    """Block until none of ``names`` is deployed any more (``soaes serve down``)."""
    while True:
        time.sleep(poll_s)
        if not set(names) & set(app_status()):
            return


def llm_replica_pids(app: str | None = None) -> dict[str, int]:
    """Actor id -> pid of every alive vLLM replica (``LLMServer``) of ``app`` (or all apps).

    Read from the GCS actor table, which needs no dashboard (Ray's state API does).
    """
    prefix = f"ServeReplica:{app}:" if app else "ServeReplica:"
    return {
        actor_id: int(info["Pid"])
        for actor_id, info in actor_table().items()
        if info.get("State") == "ALIVE"
        and info.get("ActorClassName", "").startswith(prefix)
        and "LLMServer" in info.get("ActorClassName", "")
    }
