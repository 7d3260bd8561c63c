"""One way to reach Ray for every pipeline: join a given cluster or start an embedded one."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import ray
import yaml

from soaes.ray_private import filter_worker_output, ray_data_logging_config

log = logging.getLogger(__name__)

# Keep every listener of an embedded cluster on loopback (ENVIRONMENT.md: without it Ray
# rewrites 127.0.0.1 to the machine's routable address).
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Ray Train's node-drain watcher: one node that is never drained has nothing to watch,
    # and its actor's start logs a core-worker error line on every training run's terminal.
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


# Loggers of Ray internals that poll the state API (served by the dashboard): on an embedded
# cluster started without a dashboard they warn once a second for as long as a run lasts.
_NOISY_WITHOUT_DASHBOARD = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


# What third-party libraries print on their own, off the terminal of a `soaes` command (and
# of the Ray workers an embedded cluster starts, which inherit this environment): progress
# bars (tqdm, Hugging Face), vLLM's INFO lines, Ray Data's per-second progress dumps (kept in
# the session's ray-data.log). A variable already set is left as it is.
QUIET_CONSOLE_ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "VLLM_LOGGING_LEVEL": "ERROR",
    # Ray Data's per-operator bars and its "Parquet dataset sampling" bar (driver and workers)
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}
# Worker output a quiet console still prints: soaes' tagged lines ("[cpt_demo] step 5/20 |
# ..."), and tracebacks and exception lines; the rest (vLLM's and DeepSpeed's set-up, raylet
# notices, deprecation warnings) stays in the session's log files.
SOAES_WORKER_LINE = re.compile(r"^(\[[^\]\s]+\] |Traceback |\w+(Error|Exception): )")
_quiet = {"on": False}
# Ray Data's console level: its warnings are about its own execution ("progress bars
# disabled", resource hints) and stay in the session's ray-data.log.
RAY_DATA_CONSOLE_LEVEL = "ERROR"
VERBOSE_ENV = "SOAES_VERBOSE"


def quiet_console(config_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Keep the terminal to soaes' own lines (``-v`` or ``SOAES_VERBOSE=1``: do nothing).

    Sets :data:`QUIET_CONSOLE_ENV` and ``RAY_DATA_LOGGING_CONFIG`` (a file written to
    ``config_dir``, default ``~/.cache/soaes``) where they are unset, and makes
    :func:`connect` print only soaes' lines of forwarded worker output
    (:func:`keep_worker_line`). Call it before Ray Data is imported: it reads its logging
    config once, at import.

    Returns:
        The variables it set.
    """
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return {}
    folder = Path(config_dir or Path.home() / ".cache" / "soaes")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ray_data_logging.yaml"
    path.write_text(
        yaml.safe_dump(ray_data_logging_config(RAY_DATA_CONSOLE_LEVEL), sort_keys=False)
    )
    wanted = {**QUIET_CONSOLE_ENV, "RAY_DATA_LOGGING_CONFIG": str(path)}
    done = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(done)
    _quiet["on"] = True  # connect() then filters forwarded worker output
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per HTTP request
    return done


def keep_worker_line(line: str) -> bool:
    """Whether a quiet console prints this line of forwarded worker output."""
    return SOAES_WORKER_LINE.match(line) is not None


def _filter_worker_output() -> None:
    if not _quiet["on"]:
        return
    logs = filter_worker_output(keep_worker_line)
    if logs:
        log.info("worker output (Ray, DeepSpeed, vLLM) goes to %s; -v prints it here", logs)


def quiet_worker_logs() -> None:
    """Worker setup hook: silence the state-API polling warnings of a dashboard-less cluster.

    Ray Train's placement-group cleaner asks the state API whether the controller lives; with
    no dashboard the query fails and it logs a warning every second (hundreds of lines in a
    training run). Its job (removing the placement group when the controller dies) is
    unaffected.
    """
    for name in _NOISY_WITHOUT_DASHBOARD:
        logging.getLogger(name).setLevel(logging.ERROR)


def _name_cpu_accelerator() -> None:
    """On a machine without CUDA, tell DeepSpeed (in the workers this process starts) that
    it runs on the CPU, instead of letting each worker warn that it fell back to it."""
    if "DS_ACCELERATOR" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    include_dashboard: bool = False,
    metrics_export_port: int | None = None,
) -> dict:
    """Join the Ray cluster at ``address``/``RAY_ADDRESS``, else start an embedded local one.

    An embedded cluster binds to 127.0.0.1 and advertises more logical CPUs than the machine
    has cores (at least 4), because Ray Data inputs need a CPU beside the Train workers
    (otherwise a 2-worker run on 2 cores waits forever).

    Args:
        address: a cluster address (``ray://…``, ``host:port`` or ``auto``); None reads
            ``RAY_ADDRESS``; when both are empty an embedded cluster starts.
        num_cpus: logical CPUs of an embedded cluster (default: max(4, 2 × cores)).
        include_dashboard: start the dashboard on an embedded cluster.
        metrics_export_port: Prometheus export port of an embedded cluster.

    Returns:
        ``ray.cluster_resources()`` once connected.
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        _filter_worker_output()
    else:
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
        _name_cpu_accelerator()
        cpus = num_cpus or max(4, 2 * (os.cpu_count() or 1))
        log.info("starting embedded Ray on loopback with %d logical CPUs", cpus)
        kwargs = {}
        if not include_dashboard:
            kwargs["runtime_env"] = {"worker_process_setup_hook": "soaes.ray_env.quiet_worker_logs"}
        if metrics_export_port:
            kwargs["_metrics_export_port"] = metrics_export_port
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=include_dashboard,
            _node_ip_address="127.0.0.1",
            dashboard_host="127.0.0.1",
            configure_logging=False,
            **kwargs,
        )
        _filter_worker_output()
    return ray.cluster_resources()
