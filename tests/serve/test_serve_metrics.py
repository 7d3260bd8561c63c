"""Pure logic of the serving metrics and the load summary (no Ray, no HTTP)."""

from __future__ import annotations

import pytest

from soaes.serve import metrics as m
from soaes.serve.load import Result, percentile, summarize

# The shape Ray's metrics export port serves (labels trimmed).
EXPORT = """\
# TYPE ray_vllm_spec_decode_num_drafts_total counter
ray_vllm_spec_decode_num_drafts_total{model_name="a",ReplicaId="r1"} 100.0
ray_vllm_spec_decode_num_drafts_total{model_name="a",ReplicaId="r2"} 20.0
ray_vllm_spec_decode_num_drafts_total{model_name="b",ReplicaId="r3"} 7.0
# TYPE ray_vllm_spec_decode_num_draft_tokens_total counter
ray_vllm_spec_decode_num_draft_tokens_total{model_name="a"} 240.0
# TYPE ray_vllm_spec_decode_num_accepted_tokens_total counter
ray_vllm_spec_decode_num_accepted_tokens_total{model_name="a"} 60.0
# TYPE ray_vllm_generation_tokens_total counter
ray_vllm_generation_tokens_total{model_name="a"} 300.0
# TYPE ray_vllm_request_success_total counter
ray_vllm_request_success_total{model_name="a",finished_reason="length"} 9.0
ray_vllm_request_success_total{model_name="a",finished_reason="stop"} 1.0
# TYPE ray_vllm_time_to_first_token_seconds histogram
ray_vllm_time_to_first_token_seconds_bucket{model_name="a",le="1.0"} 10.0
ray_vllm_time_to_first_token_seconds_bucket{model_name="a",le="+Inf"} 10.0
ray_vllm_time_to_first_token_seconds_sum{model_name="a"} 2.0
ray_vllm_time_to_first_token_seconds_count{model_name="a"} 10.0
# TYPE ray_vllm_request_decode_time_seconds histogram
ray_vllm_request_decode_time_seconds_sum{model_name="a"} 15.0
ray_vllm_request_decode_time_seconds_count{model_name="a"} 10.0
# TYPE ray_serve_num_http_requests_total counter
ray_serve_num_http_requests_total{application="x",status_code="200"} 10.0
ray_serve_num_http_requests_total{application="x",status_code="503"} 4.0
ray_serve_num_http_requests_total{application="y",status_code="200"} 1.0
"""


def test_counters_are_summed_per_model_and_derived():
    samples = m.parse_prometheus(EXPORT)
    c = m.vllm_counters(samples, "a")
    assert c["drafts"] == 120 and c["requests_ok"] == 10 and c["ttft_count"] == 10
    d = m.derive(c)
    assert d["acceptance_rate"] == pytest.approx(60 / 240)
    assert d["mean_acceptance_length"] == pytest.approx(1 + 60 / 120)
    assert d["ttft_mean_s"] == pytest.approx(0.2)
    assert d["decode_tokens_per_s_per_request"] == pytest.approx(300 / 15)
    assert m.vllm_counters(samples)["drafts"] == 127  # all models
    assert m.derive(m.vllm_counters(samples, "zzz"))["acceptance_rate"] is None


def test_delta_between_snapshots():
    before = m.vllm_counters(m.parse_prometheus(EXPORT), "a")
    after = dict(before, drafts=before["drafts"] + 5, accepted_tokens=before["accepted_tokens"] + 4)
    d = m.delta(after, before)
    assert d["drafts"] == 5 and d["accepted_tokens"] == 4 and d["requests_ok"] == 0


def test_http_status_counts():
    samples = m.parse_prometheus(EXPORT)
    assert m.http_status_counts(samples) == {"200": 11, "503": 4}
    assert m.http_status_counts(samples, "x") == {"200": 10, "503": 4}


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile(values, 100) == 100 and percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_summary_counts_every_answer_and_times_only_successes():
    results = [
        Result(200, 1.0, 0.1, 10),
        Result(200, 3.0, 0.3, 10),
        Result(503, 0.01),
        Result(0, 2.0, error="ReadError"),
    ]
    s = summarize(results, wall_s=4.0)
    assert s["by_status"] == {"0": 1, "200": 2, "503": 1} and s["ok"] == 2
    assert s["tokens_per_s"] == 5.0 and s["latency_p50_s"] == 1.0 and s["ttft_p99_s"] == 0.3


def _sse(*events: str) -> bytes:
    return "".join(f"data: {e}\n\n" for e in events).encode()


@pytest.mark.parametrize(
    ("body", "status", "tokens", "error"),
    [
        (
            _sse(
                '{"choices":[{"text":"a"}]}',
                '{"choices":[{"text":"b"}],"usage":{"completion_tokens":2}}',
                "[DONE]",
            ),
            200,
            2,
            "",
        ),
        (_sse('{"choices":[{"text":"a"}]}'), 0, 0, "without [DONE]"),  # replica died mid-answer
        (_sse('{"error":{"message":"boom"}}'), 0, 0, "boom"),
    ],
)
def test_stream_counts_only_complete_answers_as_success(body, status, tokens, error):
    import asyncio

    import httpx

    from soaes.serve.load import one_request

    transport = httpx.MockTransport(lambda req: httpx.Response(200, content=body))

    async def go():
        async with httpx.AsyncClient(transport=transport) as client:
            return await one_request(client, "http://x", "m", "hi", 4)

    res = asyncio.run(go())
    assert (res.status, res.completion_tokens) == (status, tokens) and error in res.error
