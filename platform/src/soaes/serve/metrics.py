"""Read the serving metrics where Ray exports them: each node's Prometheus port.

vLLM's counters (``ray_vllm_*``: requests, tokens, TTFT, latency, spec-decode drafts and
acceptances) and Serve's own (``ray_serve_*``: HTTP requests by status) are exported there by
Ray about every 10 s; the Serve HTTP port has no ``/metrics``. The dashboard's Grafana
panels read the same series.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

# counter key -> (exported sample name, labels that pick the model)
_VLLM_COUNTERS = {
    "requests_ok": "ray_vllm_request_success_total",
    "prompt_tokens": "ray_vllm_prompt_tokens_total",
    "generation_tokens": "ray_vllm_generation_tokens_total",
    "ttft_sum_s": "ray_vllm_time_to_first_token_seconds_sum",
    "ttft_count": "ray_vllm_time_to_first_token_seconds_count",
    "e2e_sum_s": "ray_vllm_e2e_request_latency_seconds_sum",
    "e2e_count": "ray_vllm_e2e_request_latency_seconds_count",
    "decode_sum_s": "ray_vllm_request_decode_time_seconds_sum",
    "drafts": "ray_vllm_spec_decode_num_drafts_total",
    "draft_tokens": "ray_vllm_spec_decode_num_draft_tokens_total",
    "accepted_tokens": "ray_vllm_spec_decode_num_accepted_tokens_total",
}


@dataclass(frozen=True)
class Sample:
    """One exported sample: name, labels and value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> list[Sample]:
    """Parse Prometheus text exposition into samples (``prometheus_client``'s parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def metrics_urls() -> list[str]:
    """``/metrics`` URLs of every alive node's Ray metrics export port (Ray connected)."""
    import ray

    return [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in ray.nodes()
        if n.get("Alive") and n.get("MetricsExportPort")
    ]


def scrape(urls: list[str] | None = None, timeout_s: float = 5.0) -> list[Sample]:
    """All samples of all nodes (unreachable nodes are skipped)."""
    samples: list[Sample] = []
    for url in urls if urls is not None else metrics_urls():
        try:
            samples += parse_prometheus(httpx.get(url, timeout=timeout_s).text)
        except httpx.HTTPError:
            continue
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of a sample name over every series whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def vllm_counters(samples: list[Sample], model: str | None = None) -> dict[str, float]:
    """vLLM's raw cumulative counters for one served model (all models when None)."""
    labels = {"model_name": model} if model else {}
    return {key: total(samples, name, **labels) for key, name in _VLLM_COUNTERS.items()}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """Counter increase between two :func:`vllm_counters` snapshots."""
    return {k: after[k] - before.get(k, 0.0) for k in after}


def derive(c: dict[str, float]) -> dict[str, Any]:
    """Readable figures from (cumulative or delta) counters.

    Acceptance rate = accepted / drafted tokens; mean acceptance length = 1 + accepted /
    drafts (tokens emitted per target step, the bonus token included).
    """

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    acc_len = ratio(c["accepted_tokens"], c["drafts"])
    return {
        "requests_ok": int(c["requests_ok"]),
        "prompt_tokens": int(c["prompt_tokens"]),
        "generation_tokens": int(c["generation_tokens"]),
        "ttft_mean_s": ratio(c["ttft_sum_s"], c["ttft_count"]),
        "latency_mean_s": ratio(c["e2e_sum_s"], c["e2e_count"]),
        "decode_tokens_per_s_per_request": ratio(c["generation_tokens"], c["decode_sum_s"]),
        "spec_drafts": int(c["drafts"]),
        "spec_draft_tokens": int(c["draft_tokens"]),
        "spec_accepted_tokens": int(c["accepted_tokens"]),
        "acceptance_rate": ratio(c["accepted_tokens"], c["draft_tokens"]),
        "mean_acceptance_length": None if acc_len is None else 1 + acc_len,
    }


def http_status_counts(samples: list[Sample], app: str | None = None) -> dict[str, int]:
    """Serve proxy's HTTP requests by status code (all apps when ``app`` is None)."""
    counts: dict[str, int] = {}
    for s in samples:
        if s.name != "ray_serve_num_http_requests_total":
            continue
        if app and s.labels.get("application") != app:
            continue
        code = s.labels.get("status_code", "?")
        counts[code] = counts.get(code, 0) + int(s.value)
    return dict(sorted(counts.items()))


def wait_for_counters(
    model: str, key: str, above: float, timeout_s: float = 60.0, urls: list[str] | None = None
) -> dict[str, float]:
    """Poll until ``vllm_counters(model)[key] > above`` (Ray exports every ~10 s).

    Returns:
        The counters seen last (the caller checks the condition if the wait timed out).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        counters = vllm_counters(scrape(urls), model)
        if counters[key] > above or time.monotonic() > deadline:
            return counters
        time.sleep(2.0)
