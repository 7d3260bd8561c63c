"""``soaes jobs list|status|logs|stop``: the jobs of a cluster, through the Job Submission API."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from typing import Any, TextIO

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _when(ms: int | None) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _duration(info: Any) -> str:
    if not info.start_time:
        return "-"
    end = info.end_time or time.time() * 1000
    return f"{(end - info.start_time) / 1000:.0f}s"


def format_jobs(jobs: list[Any]) -> str:
    """A table of jobs, newest first: id, status, start, duration, entrypoint."""
    rows = sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)
    lines = [f"{'submission_id':<44} {'status':<10} {'started':<19} {'took':>6}  entrypoint"]
    for j in rows:
        sid = j.submission_id or j.job_id or "?"
        lines.append(
            f"{sid:<44} {str(j.status.value):<10} {_when(j.start_time):<19} "
            f"{_duration(j):>6}  {j.entrypoint[:60]}"
        )
    return "\n".join(lines)


def follow_logs(client: Any, job_id: str, out: TextIO = sys.stdout) -> str:
    """Stream a job's logs until it ends; returns its final status (e.g. ``SUCCEEDED``).

    Uses the dashboard's log-tail websocket (the token travels in the client's headers).
    """

    async def _tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(_tail())
    status = client.get_job_status(job_id).value
    # The socket can close a moment before the status turns terminal.
    for _ in range(30):
        if status in TERMINAL:
            break
        time.sleep(1)
        status = client.get_job_status(job_id).value
    return status


def wait_for(client: Any, job_id: str, timeout_s: float, poll_s: float = 1.0) -> str:
    """Poll a job until it is terminal or ``timeout_s`` passes; returns its status."""
    deadline = time.monotonic() + timeout_s
    status = client.get_job_status(job_id).value
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll_s)
        status = client.get_job_status(job_id).value
    return status


def _cmd_list(client: Any, args: argparse.Namespace) -> int:
    print(format_jobs(client.list_jobs()))
    return 0


def _cmd_status(client: Any, args: argparse.Namespace) -> int:
    info = client.get_job_info(args.job_id)
    print(f"{args.job_id}: {info.status.value}")
    print(f"  entrypoint: {info.entrypoint}")
    print(
        f"  started {_when(info.start_time)}, ended {_when(info.end_time)}, took {_duration(info)}"
    )
    if info.message:
        print(f"  message: {info.message}")
    if info.metadata:
        print(f"  metadata: {info.metadata}")
    return 0 if info.status.value != "FAILED" else 1


def _cmd_logs(client: Any, args: argparse.Namespace) -> int:
    if not args.follow:
        print(client.get_job_logs(args.job_id), end="")
        return 0
    status = follow_logs(client, args.job_id)
    print(f"\n{args.job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def _cmd_stop(client: Any, args: argparse.Namespace) -> int:
    client.stop_job(args.job_id)
    status = wait_for(client, args.job_id, args.timeout_s)
    print(f"{args.job_id}: {status}")
    return 0 if status in TERMINAL else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    """Dispatch ``soaes jobs ACTION``; connection and auth problems become one clear line."""
    from ray.exceptions import AuthenticationError

    from soaes.cluster.client import job_client, quiet_client_logs

    quiet_client_logs(getattr(args, "verbose", False))
    try:
        client = job_client(args.address)
        return args.jobs_func(client, args)
    except (ConnectionError, AuthenticationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # the SDK's answer for an unknown job id and similar
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        job = getattr(args, "job_id", None) or "<id>"
        print(f"\nstopped following; the job keeps running (soaes jobs stop {job})")
        return 130


def add_jobs_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``soaes jobs`` (registered in ``soaes.cli.COMMANDS``)."""
    p = sub.add_parser("jobs", help="list / status / logs / stop jobs on a Ray cluster")
    p.add_argument("--address", default=None, help="dashboard URL (default: see `soaes submit`)")
    jsub = p.add_subparsers(dest="jobs_cmd", required=True)
    jsub.add_parser("list", help="every job, newest first").set_defaults(jobs_func=_cmd_list)
    for name, func, text in [
        ("status", _cmd_status, "status, times and message of a job"),
        ("logs", _cmd_logs, "a job's logs (--follow: stream until it ends)"),
        ("stop", _cmd_stop, "stop a job and wait until it has stopped"),
    ]:
        q = jsub.add_parser(name, help=text)
        q.add_argument("job_id", help="submission id (as printed by `soaes submit`)")
        q.set_defaults(jobs_func=func)
        if name == "logs":
            q.add_argument("-f", "--follow", action="store_true", help="stream until the job ends")
        if name == "stop":
            q.add_argument("--timeout-s", type=float, default=60.0, help="how long to wait")
    p.set_defaults(func=cmd_jobs)
