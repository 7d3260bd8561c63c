"""The fault phase of ``soaes bench serve``: kill the vLLM replica process under load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx

from soaes.serve.load import run_load, summarize


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _reap_orphans(pids: list[int], wait_s: float = 30.0) -> list[int]:
    """Wait for the killed replica's engine processes to exit; SIGKILL the ones that do not
    (an orphaned vLLM engine spins a core). Returns those that had to be killed."""
    import psutil

    deadline = time.monotonic() + wait_s
    alive = [p for p in pids if psutil.pid_exists(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(1.0)
        alive = [p for p in alive if psutil.pid_exists(p)]
    for p in alive:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


async def _load_and_kill(
    url: str,
    model: str,
    prompts: list,
    pid: int,
    key: str | None,
    n: int,
    concurrency: int,
    max_tokens: int,
    delay_s: float,
):
    task = asyncio.ensure_future(
        run_load(url, model, prompts, n, concurrency, max_tokens, api_key=key)
    )
    await asyncio.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    results, wall_s = await task
    return results, wall_s, killed_at


def _wait_for_replacement(app: str, old_pids: set[int], timeout_s: float) -> int | None:
    from soaes.serve.deploy import app_status, llm_replica_pids

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        new = set(llm_replica_pids(app).values()) - old_pids
        if new and app_status().get(app, {}).get("status") == "RUNNING":
            return new.pop()
        time.sleep(2.0)
    return None


def phase_kill(
    url: str,
    app_name: str,
    model: str,
    prompts: list,
    key: str | None,
    max_tokens: int,
    requests: int = 48,
    concurrency: int = 4,
) -> dict[str, Any]:
    """SIGKILL the app's vLLM replica a few seconds into a load run and report the damage.

    Returns:
        Answers by status during the run, failed in-flight requests (connection broken or
        5xx other than backpressure), seconds from the kill until a replacement replica is
        RUNNING, and how many of 5 requests sent afterwards succeeded.
    """
    from soaes.serve.deploy import llm_replica_pids

    old_pids = set(llm_replica_pids(app_name).values())
    old_pid = min(old_pids)  # the victim; with autoscaling there may be more replicas
    engine_pids = _children(old_pid)
    results, wall_s, killed_at = asyncio.run(
        _load_and_kill(
            url, model, prompts, old_pid, key, requests, concurrency, max_tokens, delay_s=3.0
        )
    )
    new_pid = _wait_for_replacement(app_name, old_pids, timeout_s=300)
    replaced_s = time.perf_counter() - killed_at
    orphans = _reap_orphans(engine_pids)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    after_ok = 0
    with httpx.Client(timeout=120, headers=headers) as client:
        for p in prompts[:5]:
            body = {"model": model, "messages": p, "max_tokens": 8, "temperature": 0.0}
            after_ok += client.post(url + "/v1/chat/completions", json=body).status_code == 200
    failed = [r for r in results if r.status not in (200, 429, 503)]
    return {
        "replicas_before": len(old_pids),
        "load": summarize(results, wall_s),
        "failed_in_flight": len(failed),
        "failure_examples": sorted({r.error for r in failed})[:3],
        "replaced": new_pid is not None,
        "seconds_until_replacement_running": replaced_s if new_pid else None,
        "after_kill_ok": f"{after_ok}/5",
        "orphan_engine_processes_killed": len(orphans),
    }
