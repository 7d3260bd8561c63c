"""A local multi-node Ray cluster on loopback: one ``ray start --head``, N ``ray start --address``.

Several nodes share this machine through logical resources (``--num-cpus``) and their own
ports, temp dirs and loopback addresses. Why 127.0.0.2 and up, not 127.0.0.1: Ray rewrites
``127.0.0.1``/``localhost`` to the machine's routable address, and the switch that stops
it (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) also makes ``ray start --address`` refuse to
start a worker node. Other 127.x addresses are loopback too (traffic never leaves the
machine) and Ray keeps them as given. Ray's gRPC ports listen on every interface for any
node IP but 127.0.0.1; token auth (on for these clusters) guards them, and the dashboard,
Ray Client and Serve HTTP bind 127.0.0.1 only.

Each node is a ``ray start --block`` process in its own session. SIGTERM to it runs Ray's
own shutdown hook, which stops exactly that node's processes; ``soaes cluster down`` does
that by PID (recorded with its start time, so a reused PID is never signalled). ``ray stop``
is never used: it kills every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

from soaes.cluster.auth import auth_headers, ensure_token
from soaes.cluster.nodes import (
    MAX_WORKERS,
    LocalClusterError,
    all_ports,
    busy_ports,
    head_ports,
    node_command,
    node_env,
    node_ip,
    node_ports,
    ray_bin,
)

DEFAULT_NAME = "local"
DEFAULT_PORT = 26400


@dataclass
class NodeState:
    """One ``ray start --block`` process and what it serves."""

    role: str
    index: int
    ip: str
    num_cpus: int
    pid: int
    create_time: float
    log: str
    temp_dir: str
    metrics_export_port: int
    node_id: str | None = None


@dataclass
class ClusterState:
    """What ``soaes cluster up`` started; written to ``<state_dir>/state.json``."""

    name: str
    state_dir: str
    gcs_address: str
    dashboard_url: str
    started_at: float
    nodes: list[NodeState] = field(default_factory=list)

    @property
    def num_cpus(self) -> int:
        """Logical CPUs of all nodes together."""
        return sum(n.num_cpus for n in self.nodes)

    @property
    def metrics_urls(self) -> list[str]:
        """Each node's Prometheus endpoint."""
        return [f"http://{n.ip}:{n.metrics_export_port}/metrics" for n in self.nodes]


def default_state_dir(name: str = DEFAULT_NAME) -> Path:
    """``/tmp/soaes-cluster-<name>``: short, because Ray's socket paths live below it."""
    return Path(os.environ.get("SOAES_CLUSTER_ROOT", "/tmp")) / f"soaes-cluster-{name}"


def state_file(state_dir: Path) -> Path:
    """Where a cluster's state is recorded."""
    return Path(state_dir) / "state.json"


def save_state(state: ClusterState) -> None:
    """Write the state file atomically."""
    path = state_file(Path(state.state_dir))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")
    tmp.replace(path)


def load_state(state_dir: str | Path) -> ClusterState | None:
    """The recorded state of the cluster in ``state_dir``, or None."""
    path = state_file(Path(state_dir))
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data["nodes"] = [NodeState(**n) for n in data["nodes"]]
    return ClusterState(**data)


def own_process(node: NodeState) -> psutil.Process | None:
    """The node's process if it still runs (same PID *and* start time), else None."""
    try:
        proc = psutil.Process(node.pid)
        if abs(proc.create_time() - node.create_time) > 1.0:
            return None  # the PID was reused by something else
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def is_running(state: ClusterState) -> bool:
    """Whether any node process of the cluster still runs."""
    return any(own_process(n) for n in state.nodes)


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_node(
    state: ClusterState, role: str, index: int, port: int, num_cpus: int, object_store_mib: int
) -> NodeState:
    temp_dir = Path(state.state_dir) / f"n{index}"
    log = Path(state.state_dir) / f"node{index}-{role}.log"
    cmd = node_command(role, index, port, num_cpus, object_store_mib, temp_dir)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=node_env(role),
            cwd=os.getcwd(),
            start_new_session=True,
        )
    node = NodeState(
        role=role,
        index=index,
        ip=node_ip(index),
        num_cpus=num_cpus,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        log=str(log),
        temp_dir=str(temp_dir),
        metrics_export_port=node_ports(port, index)["metrics-export-port"],
    )
    state.nodes.append(node)
    save_state(state)  # recorded at once, so a failed start can still be stopped by PID
    return node


def dashboard_get(dashboard_url: str, path: str, timeout_s: float = 5.0) -> httpx.Response:
    """GET a dashboard API path with the token header."""
    return httpx.get(f"{dashboard_url}{path}", headers=auth_headers(), timeout=timeout_s)


def alive_nodes(dashboard_url: str) -> list[dict]:
    """The dashboard's list of ALIVE nodes (``/api/v0/nodes``)."""
    body = dashboard_get(dashboard_url, "/api/v0/nodes").raise_for_status().json()
    return [n for n in body["data"]["result"]["result"] if n["state"] == "ALIVE"]


def _wait_ready(state: ClusterState, want_ips: set[str], deadline: float) -> dict[str, str]:
    """Wait until every node in ``want_ips`` is ALIVE; returns ip -> node id."""
    while True:
        for node in state.nodes:
            if own_process(node) is None:
                raise LocalClusterError(
                    f"node {node.index} ({node.role}) exited during start; log {node.log}:\n"
                    f"{_log_tail(node.log)}"
                )
        try:
            ids = {n["node_ip"]: n["node_id"] for n in alive_nodes(state.dashboard_url)}
            if want_ips <= ids.keys():
                return ids
        except (httpx.HTTPError, KeyError, ValueError):
            pass  # dashboard not up yet
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"cluster {state.name!r} not ready in time; logs in {state.state_dir}"
            )
        time.sleep(0.5)


def _check_can_start(name: str, port: int, workers: int, sdir: Path) -> None:
    """Raise :class:`LocalClusterError` unless the cluster can start: a valid worker count,
    not already running from ``sdir``, and all of its ports free."""
    if not 0 <= workers <= MAX_WORKERS:
        raise LocalClusterError(f"workers: must be 0-{MAX_WORKERS}, got {workers}")
    old = load_state(sdir)
    if old and is_running(old):
        raise LocalClusterError(
            f"cluster {name!r} already runs (dashboard {old.dashboard_url}); "
            "stop it first: soaes cluster down"
        )
    busy = busy_ports(all_ports(port, workers))
    if busy:
        raise LocalClusterError(f"ports already in use: {busy[:10]}; pick another --port")


def start_cluster(
    name: str = DEFAULT_NAME,
    port: int = DEFAULT_PORT,
    workers: int = 1,
    head_cpus: int = 4,
    worker_cpus: int = 4,
    object_store_mib: int = 1024,
    state_dir: str | Path | None = None,
    timeout_s: float = 180.0,
) -> ClusterState:
    """Start a head and ``workers`` worker nodes on loopback and wait until all are ALIVE.

    Args:
        name: cluster name (default state dir ``/tmp/soaes-cluster-<name>``).
        port: GCS port; every other port is derived from it (see :func:`node_ports`).
        workers: worker nodes beside the head (0-8).
        head_cpus: logical CPUs of the head node.
        worker_cpus: logical CPUs of each worker node.
        object_store_mib: object store size per node.
        state_dir: where state, node logs and Ray temp dirs go (keep it short: Ray puts
            Unix sockets below it, limited to 107 characters).
        timeout_s: how long to wait for all nodes.

    Raises:
        LocalClusterError: it already runs, a port is taken, or a node failed to start
            (whatever was started is stopped again).
    """
    sdir = Path(state_dir) if state_dir else default_state_dir(name)
    _check_can_start(name, port, workers, sdir)
    ensure_token(ray_bin())
    sdir.mkdir(parents=True, exist_ok=True)
    state = ClusterState(
        name=name,
        state_dir=str(sdir),
        gcs_address=f"{node_ip(0)}:{port}",
        dashboard_url=f"http://127.0.0.1:{head_ports(port)['dashboard-port']}",
        started_at=time.time(),
    )
    deadline = time.monotonic() + timeout_s
    try:
        _start_node(state, "head", 0, port, head_cpus, object_store_mib)
        _wait_ready(state, {node_ip(0)}, deadline)
        for i in range(1, workers + 1):
            _start_node(state, "worker", i, port, worker_cpus, object_store_mib)
        ids = _wait_ready(state, {n.ip for n in state.nodes}, deadline)
    except BaseException:
        stop_cluster(state)
        raise
    for node in state.nodes:
        node.node_id = ids[node.ip]
    save_state(state)
    return state


def stop_cluster(state: ClusterState, timeout_s: float = 30.0) -> list[int]:
    """Stop the cluster's nodes by PID: workers first, then the head.

    Each ``ray start --block`` process gets SIGTERM (Ray's own hook stops its node's
    processes); whatever of its process tree survives ``timeout_s`` gets SIGKILL.

    Returns:
        The PIDs that were signalled or waited for.
    """
    handled: list[int] = []
    workers = [n for n in state.nodes if n.role != "head"]
    heads = [n for n in state.nodes if n.role == "head"]
    for group in (workers, heads):
        procs: list[psutil.Process] = []
        for node in group:
            proc = own_process(node)
            if proc is None:
                continue
            procs += [proc, *proc.children(recursive=True)]
            proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        handled += [p.pid for p in procs]
    path = state_file(Path(state.state_dir))
    if path.exists():
        path.replace(path.with_name("state.stopped.json"))
    return handled
