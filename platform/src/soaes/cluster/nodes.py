"""How each node of the local cluster is started: loopback addresses, ports, command, env.

Pure functions (no process is started here); :mod:`soaes.cluster.local` runs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

MAX_WORKERS = 8
# A node's SIGTERM handler drains before stopping (30 s by default); nothing here needs it.
DRAIN_TIMEOUT_S = "5"


class LocalClusterError(RuntimeError):
    """The local cluster could not be started, found or stopped (message says why)."""


def node_ip(index: int) -> str:
    """Loopback address of node ``index`` (0 = head)."""
    return f"127.0.0.{2 + index}"


def head_ports(port: int) -> dict[str, int]:
    """``ray start --head`` port flags: GCS, dashboard, Ray Client."""
    return {"port": port, "dashboard-port": port + 1, "ray-client-server-port": port + 2}


def node_ports(port: int, index: int) -> dict[str, int]:
    """Per-node port flags: distinct for every node so several share one machine."""
    base = port + 10 + 10 * index
    return {
        "metrics-export-port": base,
        "dashboard-agent-listen-port": base + 1,
        "dashboard-agent-grpc-port": base + 2,
        "runtime-env-agent-port": base + 3,
        "node-manager-port": base + 4,
        "object-manager-port": base + 5,
        "min-worker-port": port + 100 + 100 * index,
        "max-worker-port": port + 199 + 100 * index,
    }


def busy_ports(ports: list[int]) -> list[int]:
    """The ports of ``ports`` that something already listens on (any interface)."""
    busy = []
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                busy.append(p)
    return busy


def all_ports(port: int, workers: int) -> list[int]:
    """Every port a cluster of 1 + ``workers`` nodes would listen on."""
    ports = list(head_ports(port).values())
    for i in range(workers + 1):
        flags = node_ports(port, i)
        ports += [v for k, v in flags.items() if not k.endswith("worker-port")]
        ports += list(range(flags["min-worker-port"], flags["max-worker-port"] + 1))
    return ports


def ray_bin() -> str:
    """The ``ray`` command of this interpreter's environment."""
    local = Path(sys.executable).parent / "ray"
    found = str(local) if local.exists() else shutil.which("ray")
    if not found:
        raise LocalClusterError("the `ray` command was not found next to this Python or on PATH")
    return found


def node_env(role: str) -> dict[str, str]:
    """Environment of a node: venv first on PATH (job entrypoints then find its Python and
    ``soaes``), token auth on, no inherited RAY_ADDRESS."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "token"
    # "0" on a worker node makes `ray start --address` refuse to start (see module doc).
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0" if role == "head" else "1"
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = DRAIN_TIMEOUT_S
    env.pop("RAY_ADDRESS", None)
    return env


def node_command(
    role: str, index: int, port: int, num_cpus: int, object_store_mib: int, temp_dir: Path
) -> list[str]:
    """The ``ray start --block …`` command line of one node."""
    cmd = [
        ray_bin(),
        "start",
        "--block",
        "--disable-usage-stats",
        f"--node-ip-address={node_ip(index)}",
    ]
    if role == "head":
        cmd += ["--head", "--include-dashboard=true", "--dashboard-host=127.0.0.1"]
        cmd += [f"--{k}={v}" for k, v in head_ports(port).items()]
    else:
        cmd += [f"--address={node_ip(0)}:{port}"]
    cmd += [f"--{k}={v}" for k, v in node_ports(port, index).items()]
    cmd += [
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={object_store_mib * 2**20}",
        f"--temp-dir={temp_dir}",
    ]
    return cmd
