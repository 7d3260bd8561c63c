"""The local cluster's plan (ports, commands, env) and its stop-by-PID, without Ray:
stopping is shown on a real process tree that ignores nothing but is not Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from soaes.cluster.local import (
    ClusterState,
    LocalClusterError,
    NodeState,
    load_state,
    own_process,
    save_state,
    start_cluster,
    state_file,
    stop_cluster,
)
from soaes.cluster.nodes import (
    MAX_WORKERS,
    all_ports,
    busy_ports,
    head_ports,
    node_command,
    node_env,
    node_ip,
    node_ports,
)


def test_every_port_of_a_full_cluster_is_distinct():
    port = 30000
    ports = all_ports(port, MAX_WORKERS)
    assert len(ports) == len(set(ports))
    assert min(ports) == port and max(ports) < port + 1000
    heads = set(head_ports(port).values())
    for i in range(MAX_WORKERS + 1):
        fixed = {v for k, v in node_ports(port, i).items() if not k.endswith("worker-port")}
        assert not fixed & heads


def test_head_and_worker_commands(tmp_path):
    head = node_command("head", 0, 30000, 4, 512, tmp_path / "n0")
    worker = node_command("worker", 2, 30000, 2, 512, tmp_path / "n2")
    assert {"--head", "--block", "--port=30000", "--dashboard-host=127.0.0.1"} <= set(head)
    assert "--node-ip-address=127.0.0.2" in head and "--num-cpus=4" in head
    assert f"--object-store-memory={512 * 2**20}" in head
    assert "--address=127.0.0.2:30000" in worker and "--node-ip-address=127.0.0.4" in worker
    assert not any(a.startswith(("--head", "--port=", "--dashboard-port")) for a in worker)
    assert f"--metrics-export-port={node_ports(30000, 2)['metrics-export-port']}" in worker
    assert len({node_ip(i) for i in range(MAX_WORKERS + 1)}) == MAX_WORKERS + 1


def test_node_env(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "somewhere:1")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    head, worker = node_env("head"), node_env("worker")
    assert head["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert worker["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "1"  # else ray start refuses
    assert head["RAY_AUTH_MODE"] == worker["RAY_AUTH_MODE"] == "token"
    assert head["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "RAY_ADDRESS" not in head and "RAY_ADDRESS" not in worker


def test_busy_ports_sees_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with socket.socket() as free_sock:
            free_sock.bind(("127.0.0.1", 0))
            free = free_sock.getsockname()[1]
        assert busy_ports([taken, free]) == [taken]


def _state(tmp_path: Path, pid: int, create_time: float) -> ClusterState:
    node = NodeState("head", 0, "127.0.0.2", 2, pid, create_time, "log", "tmp", 1)
    return ClusterState("t", str(tmp_path), "127.0.0.2:1", "http://127.0.0.1:2", 0.0, [node])


def test_state_roundtrip_and_pid_identity(tmp_path):
    me = psutil.Process()
    state = _state(tmp_path, me.pid, me.create_time())
    save_state(state)
    assert load_state(tmp_path) == state
    assert own_process(state.nodes[0]).pid == me.pid
    state.nodes[0].create_time -= 100  # same PID, another process: never signal it
    assert own_process(state.nodes[0]) is None


def test_stop_kills_the_recorded_process_tree(tmp_path):
    # A parent that ignores SIGTERM's effect on its children: they must still go (SIGKILL).
    proc = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    time.sleep(0.5)
    root = psutil.Process(proc.pid)
    tree = [proc.pid] + [c.pid for c in root.children(recursive=True)]
    assert len(tree) == 3
    state = _state(tmp_path, proc.pid, root.create_time())
    save_state(state)
    handled = stop_cluster(state, timeout_s=2)
    assert sorted(handled) == sorted(tree)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in tree)
    assert not state_file(tmp_path).exists() and (tmp_path / "state.stopped.json").exists()


def test_start_refuses_a_taken_port_before_starting_anything(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(LocalClusterError, match=f"ports already in use: \\[{port}"):
            start_cluster(name="t", port=port, workers=0, state_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_start_refuses_a_second_cluster_of_the_same_name(tmp_path):
    me = psutil.Process()
    save_state(_state(tmp_path, me.pid, me.create_time()))
    with pytest.raises(LocalClusterError, match="already runs"):
        start_cluster(name="t", workers=0, state_dir=tmp_path)
    with pytest.raises(LocalClusterError, match="workers: must be 0-8"):
        start_cluster(name="t", workers=9, state_dir=tmp_path / "x")
