"""``soaes submit PIPELINE.yaml [key=value …]``: validate here, then run it as a Ray job.

The config is loaded and validated locally first (a bad field fails before anything is
sent, naming the field). The job is the same command as a local run,
``soaes run pipelines/x.yaml key=value …``, executed on the cluster's head node by Ray's
Job Submission API. Its runtime environment comes from ``cluster/runtime_env.yaml``: the
working dir (pipelines and user files; ``.venv``, ``runs/`` and caches excluded), this
checkout's ``soaes`` package (``py_modules``; ``--installed`` uses the cluster's own
install instead) and the environment variables the pipelines need. Env vars are set only
here, never again in a driver's ``ray.init(runtime_env=…)``: Ray fails to merge the two.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from soaes.config.loader import ConfigError

RUNTIME_ENV_FILE = Path("cluster") / "runtime_env.yaml"
_ALLOWED_KEYS = {"working_dir", "py_modules", "excludes", "env_vars", "pip", "uv", "config"}


@dataclass(frozen=True)
class SubmittedJob:
    """What was sent: the id, where to watch it and the exact command."""

    submission_id: str
    dashboard: str
    entrypoint: str
    runtime_env: dict[str, Any]


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict (``--env`` flags)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def load_runtime_env(path: Path, root: Path) -> dict[str, Any]:
    """Read ``runtime_env.yaml``; its relative paths are taken from ``root`` (the repo root).

    Raises:
        ConfigError: missing file, not a mapping, an unknown key or a non-string env var.
    """
    if not path.is_file():
        raise ConfigError(
            f"{path}: runtime env file not found; run from the repository root or pass "
            "--runtime-env"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    unknown = set(data) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown keys {sorted(unknown)}; allowed {sorted(_ALLOWED_KEYS)}"
        )
    for key, value in (data.get("env_vars") or {}).items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: env_vars.{key}: must be a string, got {value!r}")
    if "working_dir" in data:
        data["working_dir"] = str((root / data["working_dir"]).resolve())
    if "py_modules" in data:
        data["py_modules"] = [str((root / m).resolve()) for m in data["py_modules"]]
    return data


def build_runtime_env(
    root: Path, runtime_env_file: Path, installed: bool = False, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The job's runtime env: the file's, minus ``py_modules`` when ``installed``, plus ``env``."""
    renv = load_runtime_env(runtime_env_file, root)
    if installed:
        renv.pop("py_modules", None)
    if env:
        renv["env_vars"] = {**(renv.get("env_vars") or {}), **env}
    return renv


def entrypoint(pipeline_rel: str, overrides: list[str], print_config: bool = False) -> str:
    """The job's shell command: exactly what a local run types."""
    flags = ["--print-config"] if print_config else []
    return shlex.join(["soaes", "run", pipeline_rel, *overrides, *flags])


def submission_id(name: str) -> str:
    """A readable unique id: ``soaes-<name>-<yyyymmdd-hhmmss>-<4 hex>``."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "job"
    return f"soaes-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def pipeline_in_root(pipeline: Path, root: Path) -> str:
    """The pipeline's path inside the working dir (the job sees only that tree)."""
    try:
        return pipeline.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            f"{pipeline}: outside the working dir {root}; the job only receives that folder"
        ) from None


def submit_pipeline(
    pipeline: str | Path,
    overrides: list[str] | None = None,
    address: str | None = None,
    root: str | Path | None = None,
    runtime_env_file: str | Path | None = None,
    installed: bool = False,
    env: dict[str, str] | None = None,
    print_config: bool = False,
) -> SubmittedJob:
    """Validate a pipeline locally, then submit ``soaes run`` for it as a Ray job.

    Args:
        pipeline: the pipeline YAML (inside ``root``).
        overrides: ``key.path=value`` overrides, validated here and passed on unchanged.
        address: dashboard URL (see :func:`soaes.cluster.client.dashboard_address`).
        root: the working dir shipped with the job (default: the current directory).
        runtime_env_file: default ``<root>/cluster/runtime_env.yaml``.
        installed: use the soaes installed on the cluster instead of this checkout's.
        env: extra environment variables for the job.
        print_config: the job only resolves and prints the config (its ``config_hash``
            must equal the local one): a cheap check of what the cluster sees.

    Raises:
        ConfigError: the config (field named), the runtime env or a path is wrong.
        ConnectionError: no dashboard at the address.
    """
    from soaes.cluster.client import dashboard_address, job_client
    from soaes.config.loader import config_hash, load_config

    overrides = list(overrides or [])
    cfg = load_config(pipeline, overrides)
    root = Path(root or Path.cwd()).resolve()
    rel = pipeline_in_root(Path(pipeline), root)
    renv_path = Path(runtime_env_file) if runtime_env_file else root / RUNTIME_ENV_FILE
    runtime_env = build_runtime_env(root, renv_path, installed, env)
    command = entrypoint(rel, overrides, print_config)
    client = job_client(address)
    sid = client.submit_job(
        entrypoint=command,
        runtime_env=runtime_env,
        submission_id=submission_id(cfg.name),
        metadata={"pipeline": rel, "kind": cfg.kind, "config_hash": config_hash(cfg)},
    )
    return SubmittedJob(sid, dashboard_address(address), command, runtime_env)


def cmd_submit(args: argparse.Namespace) -> int:
    """``soaes submit``: submit, print id and dashboard URL, then follow unless --no-wait."""
    from ray.exceptions import AuthenticationError

    from soaes.cluster.client import job_client, job_url, quiet_client_logs
    from soaes.cluster.jobs import follow_logs

    quiet_client_logs(getattr(args, "verbose", False))
    try:
        job = submit_pipeline(
            args.pipeline,
            args.overrides,
            address=args.address,
            root=args.working_dir,
            runtime_env_file=args.runtime_env,
            installed=args.installed,
            env=parse_env(args.env),
            print_config=args.print_config,
        )
    except (ConnectionError, AuthenticationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"submitted {job.submission_id}")
    print(f"  command:   {job.entrypoint}")
    print(f"  dashboard: {job_url(job.dashboard, job.submission_id)}")
    print(f"  logs:      soaes jobs logs {job.submission_id} --follow")
    sys.stdout.flush()
    if args.no_wait:
        return 0
    try:
        status = follow_logs(job_client(job.dashboard), job.submission_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running (soaes jobs stop {job.submission_id})")
        return 130
    print(f"\n{job.submission_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def add_submit_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``soaes submit`` (registered in ``soaes.cli.COMMANDS``)."""
    p = sub.add_parser(
        "submit",
        help="validate a pipeline, then run it as a Ray job on a cluster",
        description="Validate a pipeline here, then run `soaes run` for it as a Ray job.",
    )
    p.add_argument("pipeline", help="pipelines/X.yaml (inside the working dir)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides")
    p.add_argument("--address", default=None, help="dashboard URL, e.g. http://127.0.0.1:8265")
    p.add_argument("--no-wait", action="store_true", help="return after submitting")
    p.add_argument(
        "--print-config", action="store_true", help="the job only prints the resolved config"
    )
    p.add_argument("--working-dir", default=None, help="folder shipped with the job (default .)")
    p.add_argument(
        "--runtime-env", default=None, help="default <working-dir>/cluster/runtime_env.yaml"
    )
    p.add_argument(
        "--installed",
        action="store_true",
        help="use the cluster's installed soaes, not this checkout",
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra env var (repeatable)"
    )
    p.set_defaults(func=cmd_submit)
