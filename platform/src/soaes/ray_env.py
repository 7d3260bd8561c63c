"""One way to reach Ray for every pipeline: join a given cluster or start an embedded one."""

from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)

# Keep every listener of an embedded cluster on loopback (ENVIRONMENT.md: without it Ray
# rewrites 127.0.0.1 to the machine's routable address).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


# Loggers of Ray internals that poll the state API (served by the dashboard): on an embedded
# cluster started without a dashboard they warn once a second for as long as a run lasts.
_NOISY_WITHOUT_DASHBOARD = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def quiet_worker_logs() -> None:
    """Worker setup hook: silence the state-API polling warnings of a dashboard-less cluster.

    Ray Train's placement-group cleaner asks the state API whether the controller lives; with
    no dashboard the query fails and it logs a warning every second (hundreds of lines in a
    training run). Its job (removing the placement group when the controller dies) is
    unaffected.
    """
    for name in _NOISY_WITHOUT_DASHBOARD:
        logging.getLogger(name).setLevel(logging.ERROR)


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
    else:
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
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
    return ray.cluster_resources()
