"""``soaes serve up APP.yaml | down | status``: run, stop and inspect the Serve apps.

``up`` without a cluster address starts an embedded loopback Ray, deploys the file's apps
and stays in the foreground (Ctrl-C, SIGTERM or ``soaes serve down`` stop it); with
``--address``/``RAY_ADDRESS`` it deploys onto that cluster and returns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from soaes.serve.models import ServeConfigError


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand (registered in ``soaes.cli.COMMANDS``)."""
    p = sub.add_parser(
        "serve", help="Serve apps: up / down / status", description=__doc__.splitlines()[0]
    )
    ssub = p.add_subparsers(dest="serve_cmd", required=True)
    up = ssub.add_parser("up", help="deploy a Serve config file (serve_apps/*.yaml)")
    up.add_argument("app", help="Serve config file, e.g. serve_apps/tiny_spec.yaml")
    up.add_argument(
        "overrides",
        nargs="*",
        help="key.path=value, e.g. applications.0.args.api_key_env=SOAES_API_KEY",
    )
    up.add_argument("--address", default=None, help="Ray cluster (else RAY_ADDRESS/embedded)")
    up.add_argument("--num-cpus", type=int, default=None, help="embedded cluster's logical CPUs")
    up.add_argument("--dashboard", action="store_true", help="start the Ray dashboard (embedded)")
    up.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Ray metrics export port of the embedded cluster (Prometheus)",
    )
    up.set_defaults(func=cmd_up)
    down = ssub.add_parser("down", help="delete the deployed apps (and stop `serve up`)")
    down.add_argument("--address", default=None, help="Ray cluster (else recorded/RAY_ADDRESS)")
    down.add_argument("--app", action="append", default=None, help="only this app (repeatable)")
    down.set_defaults(func=cmd_down)
    status = ssub.add_parser("status", help="apps, replicas and serving metrics")
    status.add_argument("--address", default=None, help="Ray cluster (else recorded/RAY_ADDRESS)")
    status.add_argument(
        "--window",
        type=float,
        default=0.0,
        help="also measure rates over this many seconds (two scrapes)",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=cmd_status)


def cmd_up(args: argparse.Namespace) -> int:
    """Deploy the file's apps; with an embedded cluster, serve until stopped."""
    import ray
    from ray import serve

    from soaes.ray_env import LOOPBACK_ENV, connect
    from soaes.serve import deploy as dep

    try:
        schema = dep.load_serve_config(args.app, args.overrides)
    except ServeConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address is None and dep.read_state():
        print(
            f"error: a `soaes serve up` is already running ({dep.state_path()}); "
            "run `soaes serve down` first",
            file=sys.stderr,
        )
        return 2
    for k, v in LOOPBACK_ENV.items():
        os.environ.setdefault(k, v)
    connect(
        address,
        num_cpus=args.num_cpus,
        include_dashboard=args.dashboard,
        metrics_export_port=args.metrics_port,
    )
    try:
        names = dep.deploy(schema)
    except (ServeConfigError, RuntimeError) as e:
        print(f"error: deploying {args.app} failed: {e}", file=sys.stderr)
        return 1
    url = dep.base_url(schema)
    print(f"serving {', '.join(names)}: OpenAI API at {url}/v1 (models: {url}/v1/models)")
    if address:
        return 0
    return _serve_in_foreground(names, url, ray.get_runtime_context().gcs_address, serve, ray)


def _serve_in_foreground(names: list[str], url: str, gcs_address: str, serve, ray) -> int:
    from soaes.serve import deploy as dep

    dep.write_state(
        {
            "pid": os.getpid(),
            "address": gcs_address,
            "url": url,
            "apps": names,
            "started": time.time(),
            # Ray's embedded cluster turns token auth on by itself; a process joining it by
            # address has to opt in (the token is in ~/.ray/auth_token).
            "auth_mode": os.environ.get("RAY_AUTH_MODE"),
        }
    )
    # SIGTERM (e.g. from a supervisor) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"embedded Ray at {gcs_address}; Ctrl-C or `soaes serve down` to stop", flush=True)
    try:
        dep.wait_while_apps_run(names)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
        dep.clear_state(os.getpid())
    print("stopped")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _join(address: str | None) -> bool:
    """Join the given / RAY_ADDRESS / recorded cluster; False when none is known."""
    import ray

    from soaes.ray_env import LOOPBACK_ENV, connect
    from soaes.serve.deploy import read_state

    if ray.is_initialized():  # called in-process (tests, benchmarks): use that cluster
        return True
    state = read_state()
    if not (address or os.environ.get("RAY_ADDRESS")) and state:
        address = state["address"]
        if state.get("auth_mode") == "token" and "RAY_AUTH_MODE" not in os.environ:
            # Ray reads its auth mode once; this helper sets RAY_AUTH_MODE=token and
            # refreshes that cached config, as Ray does itself for a cluster it finds.
            from soaes.ray_private import enable_token_auth_if_available

            enable_token_auth_if_available()
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        print(
            "error: no running `soaes serve up` found; pass --address or set RAY_ADDRESS",
            file=sys.stderr,
        )
        return False
    for k, v in LOOPBACK_ENV.items():
        os.environ.setdefault(k, v)
    connect(address)
    return True


def cmd_down(args: argparse.Namespace) -> int:
    """Delete the apps (all, or those named); an owning ``serve up`` then exits by itself."""
    from ray import serve

    from soaes.serve.deploy import app_status

    if not _join(args.address):
        return 2
    names = args.app or list(app_status())
    for name in names:
        serve.delete(name)
        print(f"deleted {name}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print apps, deployments, replica states and the serving metrics of each model."""
    from soaes.serve import metrics as m
    from soaes.serve.deploy import app_status

    if not _join(args.address):
        return 2
    before = m.scrape()
    report = {
        "apps": app_status(),
        "http_requests_by_status": m.http_status_counts(before),
        "models": {},
    }
    models = sorted(
        {
            s.labels["model_name"]
            for s in before
            if s.name.startswith("ray_vllm_") and "model_name" in s.labels
        }
    )
    after = before
    if args.window > 0:
        time.sleep(args.window)
        after = m.scrape()
    for model in models:
        figures = m.derive(m.vllm_counters(after, model))
        if args.window > 0:
            d = m.delta(m.vllm_counters(after, model), m.vllm_counters(before, model))
            figures["window_s"] = args.window
            figures["window_tokens_per_s"] = d["generation_tokens"] / args.window
            figures["window_requests_per_s"] = d["requests_ok"] / args.window
        report["models"][model] = figures
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    return 0


def format_status(report: dict) -> str:
    """Human-readable status: one block per app and per model."""
    lines = []
    for name, app in report["apps"].items():
        lines.append(f"app {name}: {app['status']} {app['message'] or ''}".rstrip())
        for dep, d in app["deployments"].items():
            replicas = " ".join(f"{k}={v}" for k, v in d["replicas"].items())
            lines.append(f"  {dep}: {d['status']} replicas {replicas or '-'}")
    lines.append(f"http requests by status: {report['http_requests_by_status'] or '-'}")
    for model, f in report["models"].items():
        lines.append(f"model {model}:")
        for key, value in f.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            lines.append(f"  {key:<34} {shown}")
    if not report["models"]:
        lines.append("no vLLM metrics exported yet (Ray exports them every ~10 s)")
    return "\n".join(lines)
