"""End to end on a real 2-node local cluster (head + 1 worker on loopback, own ports):
``soaes submit`` runs a real pipeline as a Ray job, its logs and the dashboard API answer
with the token (and refuse without it), ``serve deploy`` brings up the serving engineer's
tiny speculative-decoding app, Ray's Prometheus export carries what the Grafana dashboard
reads, and everything started is stopped by PID. Budget: under 4 minutes on a quiet machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import ray
import yaml

from soaes.cli import main
from soaes.cluster.auth import auth_headers
from soaes.cluster.client import job_client
from soaes.cluster.local import alive_nodes, start_cluster, stop_cluster
from soaes.cluster.nodes import all_ports, busy_ports
from soaes.cluster.submit import build_runtime_env
from soaes.config.loader import config_hash, load_config

ROOT = Path(__file__).resolve().parents[2]
SERVE_APP = ROOT / "serve_apps" / "tiny_spec.yaml"
# The lightest real pipeline whose runner exists, with overrides that keep it small; each
# does real work on the cluster (Ray Data on real corpora, or perplexity of real models on
# real text in Ray tasks) and writes config.resolved.yaml next to its outputs.
PIPELINES = [
    # one small stage: real Ray Data work (read, render the chat template, tokenize, mask,
    # split, write) in well under a minute; the shipped stages take minutes on 2 cores.
    (
        "soaes.data.sft",
        "data_sft_tiny.yaml",
        ["stages=[{name: stage1_chat, sources: [{name: chatterbot_zh}]}]"],
    ),
    (
        "soaes.report.pipeline",
        "eval_tiny.yaml",
        [
            "qa=[]",
            "mmlu.enabled=false",
            "perplexity.0.max_docs=4",
            "perplexity.1.max_docs=4",
            "perplexity.2.max_docs=2",
        ],
    ),
]
# Publishes like a training loop does (a gauge not refreshed for 120 s stops being exported).
METRICS_JOB = (
    'python -c "import ray, time; ray.init(); '
    "from soaes.telemetry import publish_train_step, count_records; "
    "count_records('e2e', 'clean', {'kept': 90, 'dropped': 10}); "
    "[(publish_train_step('e2e', 'cpt', i, 2.5, 1234.0, 1e-4), time.sleep(2)) "
    'for i in range(300)]"'
)


def _log(msg: str) -> None:
    """Progress on the real stderr (capsys holds the CLI's output for the assertions)."""
    print(f"[e2e] {msg}", file=sys.__stderr__, flush=True)


def _serve_deploy(app_file: Path, dashboard: str) -> subprocess.CompletedProcess:
    """`serve deploy` as a user runs it: token mode on, so the CLI sends the token."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    serve = Path(sys.executable).parent / "serve"
    return subprocess.run(
        [str(serve), "deploy", str(app_file), "--address", dashboard],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _free_base_port() -> int:
    for base in (27400, 28400, 29400, 30400, 31400):
        if not busy_ports([*all_ports(base, 1), base + 3]):
            return base
    pytest.fail("no free block of ports for the test cluster (27400-31400 all busy)")


def _pipeline() -> tuple[Path, list[str]]:
    for module, name, overrides in PIPELINES:
        if importlib.util.find_spec(module):
            return ROOT / "pipelines" / name, overrides
    raise AssertionError(f"no pipeline runner importable: {[m for m, _, _ in PIPELINES]}")


def _scrape(urls: list[str]) -> str:
    text = ""
    for url in urls:
        try:
            text += httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            pass
    return text


def _wait_metrics(urls: list[str], names: list[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = _scrape(urls)
        if all(n in text for n in names) or time.monotonic() > deadline:
            return text
        time.sleep(2)


def _serve_app_file(tmp: Path, http_port: int) -> Path:
    config = yaml.safe_load(SERVE_APP.read_text(encoding="utf-8"))
    config["http_options"]["port"] = http_port  # the rest exactly as the serving engineer ships it
    path = tmp / "serve_app.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait_app_running(dashboard: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = httpx.get(f"{dashboard}/api/serve/applications/", headers=auth_headers(), timeout=10)
        apps = r.json().get("applications", {}) if r.status_code == 200 else {}
        statuses = {name: a.get("status") for name, a in apps.items()}
        if statuses and all(s == "RUNNING" for s in statuses.values()):
            return statuses
        if any(s in ("DEPLOY_FAILED", "UNHEALTHY") for s in statuses.values()):
            pytest.fail(f"serve app failed: {json.dumps(apps)[:2000]}")
        time.sleep(3)
    pytest.fail("serve app not RUNNING in time")


@pytest.mark.heavy
def test_two_node_cluster_job_dashboard_serve_and_stop(capsys):
    pipeline, overrides = _pipeline()
    port = _free_base_port()
    serve_port = port + 3
    state_dir = Path(tempfile.mkdtemp(prefix="soaes-ct-", dir="/tmp"))  # short: Ray's sockets
    out_dir = state_dir / "out"
    t0 = time.monotonic()
    state = start_cluster(
        name="e2e",
        port=port,
        workers=1,
        head_cpus=4,
        worker_cpus=4,
        object_store_mib=512,
        state_dir=state_dir,
        timeout_s=120,
    )
    tree: list[int] = []
    try:
        dash = state.dashboard_url
        # Two nodes on two loopback addresses; the dashboard API wants the token.
        nodes = alive_nodes(dash)
        assert sorted(n["node_ip"] for n in nodes) == ["127.0.0.2", "127.0.0.3"]
        assert [n["is_head_node"] for n in nodes].count(True) == 1
        assert httpx.get(f"{dash}/api/version", timeout=5).status_code == 401
        ok = httpx.get(f"{dash}/api/version", headers=auth_headers(), timeout=5)
        assert ok.status_code == 200 and ok.json()["ray_version"] == ray.__version__
        _log(f"cluster up in {time.monotonic() - t0:.0f}s")

        # A real pipeline through `soaes submit`; the Serve app and a metrics job start
        # while it runs (two cores: the slow parts overlap).
        overrides = [*overrides, f"output_dir={out_dir}"]
        argv = [str(pipeline), *overrides, "--address", dash, "--working-dir", str(ROOT)]
        assert main(["submit", *argv, "--no-wait"]) == 0
        submitted = capsys.readouterr().out
        sid = next(w for w in submitted.split() if w.startswith("soaes-"))
        assert f"{dash}/#/jobs/{sid}" in submitted
        client = job_client(dash)
        metrics_job = client.submit_job(
            entrypoint=METRICS_JOB,
            runtime_env=build_runtime_env(ROOT, ROOT / "cluster/runtime_env.yaml"),
        )
        deploy = _serve_deploy(_serve_app_file(state_dir, serve_port), dash)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr

        # Follow the pipeline job to its end through `soaes jobs logs --follow`.
        rc = main(["jobs", "--address", dash, "logs", sid, "--follow"])
        followed = capsys.readouterr().out
        assert rc == 0, followed[-3000:]
        assert f"soaes run pipelines/{pipeline.name}" in followed
        assert f"{sid}: SUCCEEDED" in followed
        resolved = yaml.safe_load((out_dir / "config.resolved.yaml").read_text())
        assert resolved["config_hash"] == config_hash(load_config(pipeline, overrides))
        assert len(list(out_dir.rglob("*"))) > 1  # the outputs themselves, not only the config
        _log(f"pipeline job {sid} SUCCEEDED at {time.monotonic() - t0:.0f}s")
        assert main(["jobs", "--address", dash, "status", sid]) == 0
        assert f"{sid}: SUCCEEDED" in capsys.readouterr().out
        assert main(["jobs", "--address", dash, "list"]) == 0
        assert sid in capsys.readouterr().out
        jobs = httpx.get(f"{dash}/api/jobs/", headers=auth_headers(), timeout=10).json()
        assert any(j["submission_id"] == sid and j["status"] == "SUCCEEDED" for j in jobs)

        # The serving engineer's tiny spec-decoding app answers over HTTP.
        statuses = _wait_app_running(dash, timeout_s=180)
        _log(f"serve app {statuses} at {time.monotonic() - t0:.0f}s")
        model = yaml.safe_load(SERVE_APP.read_text())["applications"][0]["args"]["model_id"]
        r = httpx.post(
            f"http://127.0.0.1:{serve_port}/v1/completions",
            json={"model": model, "prompt": "hello", "max_tokens": 8, "temperature": 0},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] > 0

        # What the Grafana dashboard queries is on the nodes' export ports.
        wanted = [
            "ray_node_cpu_utilization{",
            "ray_node_mem_used{",
            "ray_cluster_active_nodes{",
            "ray_serve_num_http_requests_total{",
            "ray_serve_http_request_latency_ms_bucket{",
            "ray_serve_deployment_replica_healthy{",
            "ray_vllm_spec_decode_num_drafts_total{",
            "ray_vllm_spec_decode_num_draft_tokens_total{",
            "ray_soaes_train_loss{",
            "ray_soaes_train_tokens_per_s{",
            "ray_soaes_data_records_total{",
        ]
        text = _wait_metrics(state.metrics_urls, wanted, timeout_s=45)
        missing = [w for w in wanted if w not in text]
        assert not missing, missing
        assert 'SessionName="' in text  # the dashboard's session filter label
        loss = next(ln for ln in text.splitlines() if ln.startswith("ray_soaes_train_loss{"))
        assert 'run="e2e"' in loss and loss.endswith(" 2.5")
        # Prometheus finds every node through the file cluster/grafana/prometheus.yml names.
        sd = json.loads((state_dir / "n0" / "prom_metrics_service_discovery.json").read_text())
        targets = {t for group in sd for t in group["targets"]}
        assert {u.split("/")[2] for u in state.metrics_urls} <= targets, targets
        _log(f"metrics seen at {time.monotonic() - t0:.0f}s")

        # `soaes jobs stop` ends the still-sleeping metrics job.
        assert main(["jobs", "--address", dash, "stop", metrics_job, "--timeout-s", "30"]) == 0
        assert f"{metrics_job}: STOPPED" in capsys.readouterr().out
    finally:
        for node in state.nodes:
            try:
                proc = psutil.Process(node.pid)
                tree += [proc.pid] + [c.pid for c in proc.children(recursive=True)]
            except psutil.Error:
                pass
        handled = stop_cluster(state)
    left = [p for p in tree if _running(p)]
    assert not left, f"still running after stop: {left}"
    _log(f"stopped {len(handled)} processes by PID; total {time.monotonic() - t0:.0f}s")
    shutil.rmtree(state_dir, ignore_errors=True)  # kept when the test fails: node logs
