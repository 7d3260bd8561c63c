"""Reach a cluster's Job Submission API: which dashboard address, with which token.

The address is the dashboard's HTTP URL (``http://host:8265``), not the GCS address. It
comes from ``--address``, else ``RAY_API_SERVER_ADDRESS`` (Ray's own variable for it),
else the running local cluster named by ``SOAES_CLUSTER`` (default ``local``), else
``http://127.0.0.1:8265``. ``RAY_ADDRESS`` is not read here: for ``soaes run`` it names the
GCS address, and the two must not be confused.
"""

from __future__ import annotations

import logging
import os
from typing import Any

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


def dashboard_address(address: str | None = None) -> str:
    """The dashboard URL to talk to (see module doc for the order of sources)."""
    from soaes.cluster.local import DEFAULT_NAME, default_state_dir, is_running, load_state

    if address:
        return address if "://" in address else f"http://{address}"
    env = os.environ.get("RAY_API_SERVER_ADDRESS")
    if env:
        return env if "://" in env else f"http://{env}"
    state = load_state(default_state_dir(os.environ.get("SOAES_CLUSTER", DEFAULT_NAME)))
    if state and is_running(state):
        return state.dashboard_url
    return DEFAULT_DASHBOARD


def job_client(address: str | None = None) -> Any:
    """A ``JobSubmissionClient`` for the cluster, sending the auth token when there is one.

    Raises:
        ConnectionError: the dashboard does not answer (message names the address).
    """
    from ray.job_submission import JobSubmissionClient

    from soaes.cluster.auth import auth_headers

    url = dashboard_address(address)
    try:
        return JobSubmissionClient(url, headers=auth_headers())
    except ConnectionError as e:
        raise ConnectionError(
            f"no Ray dashboard at {url}: start one (soaes cluster up) or pass --address "
            f"({e.__class__.__name__}: {str(e).splitlines()[0]})"
        ) from None


def job_url(dashboard: str, submission_id: str) -> str:
    """The dashboard page of one job."""
    return f"{dashboard.rstrip('/')}/#/jobs/{submission_id}"


def quiet_client_logs(verbose: bool = False) -> None:
    """Keep Ray's upload chatter and HTTP request lines out of the CLI's output (``-v``
    shows them)."""
    if not verbose:
        # The SDK modules set their own INFO level, so the parent's is not enough.
        names = ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk")
        for name in (*names, "httpx"):
            logging.getLogger(name).setLevel(logging.ERROR)
