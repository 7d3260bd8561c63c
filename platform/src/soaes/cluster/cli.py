"""``soaes cluster up|down|status``: the local multi-node cluster of :mod:`soaes.cluster.local`."""

from __future__ import annotations

import argparse
import sys

from soaes.cluster.local import (
    DEFAULT_NAME,
    DEFAULT_PORT,
    ClusterState,
    LocalClusterError,
    alive_nodes,
    default_state_dir,
    load_state,
    own_process,
    start_cluster,
    stop_cluster,
)


def describe(state: ClusterState) -> str:
    """What a newcomer needs after ``up``: addresses, metrics, next commands."""
    lines = [
        f"local Ray cluster {state.name!r}: {len(state.nodes)} nodes, {state.num_cpus} logical CPUs",
        f"  dashboard  {state.dashboard_url}   (token in ~/.ray/auth_token)",
        f"  address    {state.gcs_address}   (RAY_ADDRESS for `soaes run --address`)",
        f"  metrics    {', '.join(state.metrics_urls)}",
        f"  state      {state.state_dir}/state.json (node logs beside it)",
        "  submit     soaes submit pipelines/data_sft_tiny.yaml",
        f"  stop       soaes cluster down{'' if state.name == DEFAULT_NAME else ' --name ' + state.name}",
    ]
    return "\n".join(lines)


def _state_or_none(args: argparse.Namespace) -> ClusterState | None:
    return load_state(args.state_dir or default_state_dir(args.name))


def _cmd_up(args: argparse.Namespace) -> int:
    state = start_cluster(
        name=args.name,
        port=args.port,
        workers=args.workers,
        head_cpus=args.head_cpus,
        worker_cpus=args.worker_cpus,
        object_store_mib=args.object_store_mib,
        state_dir=args.state_dir,
        timeout_s=args.timeout_s,
    )
    print(describe(state))
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    state = _state_or_none(args)
    if state is None:
        print(f"no running cluster {args.name!r} recorded")
        return 0
    pids = stop_cluster(state, timeout_s=args.timeout_s)
    print(f"stopped cluster {state.name!r}: {len(pids)} processes (by PID)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = _state_or_none(args)
    if state is None:
        print(f"no running cluster {args.name!r} recorded")
        return 1
    print(describe(state))
    up = 0
    for node in state.nodes:
        alive = own_process(node) is not None
        up += alive
        print(
            f"  node {node.index} {node.role:<6} {node.ip:<10} pid {node.pid:<7} "
            f"{'running' if alive else 'GONE':<8} cpus {node.num_cpus} id {node.node_id}"
        )
    try:
        print(f"  dashboard sees {len(alive_nodes(state.dashboard_url))} alive nodes")
    except Exception as e:  # noqa: BLE001 - status must report, not crash
        print(f"  dashboard not reachable: {e.__class__.__name__}")
    return 0 if up == len(state.nodes) else 1


def cmd_cluster(args: argparse.Namespace) -> int:
    """Dispatch ``soaes cluster ACTION``; start/stop problems become one clear line."""
    from soaes.cluster.client import quiet_client_logs

    quiet_client_logs(getattr(args, "verbose", False))
    try:
        return args.cluster_func(args)
    except (LocalClusterError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def add_cluster_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``soaes cluster`` (registered in ``soaes.cli.COMMANDS``)."""
    p = sub.add_parser("cluster", help="a local multi-node Ray cluster on loopback: up/down/status")
    csub = p.add_subparsers(dest="cluster_cmd", required=True)
    up = csub.add_parser("up", help="start a head and worker nodes (ray start) and wait for them")
    up.add_argument("--workers", type=int, default=1, help="worker nodes beside the head")
    up.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="GCS port; others derive from it"
    )
    up.add_argument("--head-cpus", type=int, default=4, help="logical CPUs of the head")
    up.add_argument("--worker-cpus", type=int, default=4, help="logical CPUs per worker node")
    up.add_argument("--object-store-mib", type=int, default=1024, help="object store per node")
    up.add_argument("--timeout-s", type=float, default=180.0, help="wait this long for the nodes")
    up.set_defaults(cluster_func=_cmd_up)
    down = csub.add_parser("down", help="stop the cluster's processes by PID (never `ray stop`)")
    down.add_argument("--timeout-s", type=float, default=30.0, help="then SIGKILL what is left")
    down.set_defaults(cluster_func=_cmd_down)
    status = csub.add_parser("status", help="nodes, PIDs, dashboard")
    status.set_defaults(cluster_func=_cmd_status)
    for q in (up, down, status):
        q.add_argument(
            "--name", default=DEFAULT_NAME, help="cluster name (state in /tmp/soaes-cluster-NAME)"
        )
        q.add_argument("--state-dir", default=None, help="override the state dir")
    p.set_defaults(func=cmd_cluster)
