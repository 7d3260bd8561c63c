"""soaes' own Prometheus metrics, exported through Ray (the Grafana dashboard reads them).

Ray exports ``ray.util.metrics`` series on every node's metrics export port with a ``ray_``
prefix (counters also get ``_total``): ``soaes_train_loss`` appears as
``ray_soaes_train_loss``. Ray already exports Ray Data rows per operator
(``ray_data_output_rows``), Serve requests and latency (``ray_serve_*``) and vLLM's
counters (``ray_vllm_*``); these add what only soaes knows: training loss, tokens/s and
learning rate, and the data pipeline's per-outcome record counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

TRAIN_LOSS = "soaes_train_loss"
TRAIN_TOKENS_PER_S = "soaes_train_tokens_per_s"
TRAIN_LEARNING_RATE = "soaes_train_learning_rate"
TRAIN_STEP = "soaes_train_step"
DATA_RECORDS = "soaes_data_records"

TRAIN_TAGS = ("run", "stage")
DATA_TAGS = ("pipeline", "stage", "outcome")

# name -> the series Prometheus sees (what dashboards query).
EXPORTED = {
    TRAIN_LOSS: "ray_soaes_train_loss",
    TRAIN_TOKENS_PER_S: "ray_soaes_train_tokens_per_s",
    TRAIN_LEARNING_RATE: "ray_soaes_train_learning_rate",
    TRAIN_STEP: "ray_soaes_train_step",
    DATA_RECORDS: "ray_soaes_data_records_total",
}


@cache
def _gauge(name: str, description: str) -> Any:
    from ray.util.metrics import Gauge

    return Gauge(name, description=description, tag_keys=TRAIN_TAGS)


@cache
def _records_counter() -> Any:
    from ray.util.metrics import Counter

    return Counter(
        DATA_RECORDS,
        description="Records seen by a data pipeline stage, by outcome "
        "(kept/filtered/deduped/quarantined).",
        tag_keys=DATA_TAGS,
    )


def publish_train_step(
    run: str, stage: str, step: int, loss: float, tokens_per_s: float, learning_rate: float
) -> None:
    """Set the training gauges (call from rank 0 each logging step; needs Ray connected).

    Args:
        run: run name (the pipeline's ``name``).
        stage: e.g. ``cpt``, ``sft_stage1_chat``, ``distill``.
        step: optimizer step.
        loss: training loss of the step.
        tokens_per_s: training throughput of all workers together.
        learning_rate: current learning rate.
    """
    tags = {"run": run, "stage": stage}
    _gauge(TRAIN_LOSS, "Training loss of the latest step.").set(loss, tags)
    _gauge(TRAIN_TOKENS_PER_S, "Training tokens per second, all workers.").set(tokens_per_s, tags)
    _gauge(TRAIN_LEARNING_RATE, "Learning rate of the latest step.").set(learning_rate, tags)
    _gauge(TRAIN_STEP, "Latest optimizer step.").set(step, tags)


def count_records(pipeline: str, stage: str, counts: dict[str, int]) -> None:
    """Add a data stage's record counts by outcome (e.g. ``{"kept": 980, "filtered": 20}``)."""
    counter = _records_counter()
    for outcome, n in counts.items():
        if n:
            counter.inc(n, {"pipeline": pipeline, "stage": stage, "outcome": outcome})


_failed: set[str] = set()


def try_publish(publish: Callable[..., None], *args: Any) -> None:
    """Call ``publish(*args)`` without ever raising: metrics must not break a run.

    A failure (e.g. no Ray connection, or a metrics agent that is down) is logged once per
    publish function at debug level; later failures are silent.
    """
    try:
        publish(*args)
    except Exception:
        name = getattr(publish, "__name__", repr(publish))
        if name not in _failed:
            _failed.add(name)
            log.debug("soaes metrics: %s failed; not published", name, exc_info=True)
