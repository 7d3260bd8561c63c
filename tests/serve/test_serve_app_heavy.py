"""The real tiny spec-decoding app: Ray Serve + vLLM (target + draft) on CPU, over loopback HTTP.

One app is deployed for the whole module (start-up is most of the cost) from the shipped
serve_apps/tiny_spec.yaml, with overrides that turn on the API key and make backpressure
easy to reach (4 running + 4 queued requests).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "SOAES_TEST_SERVE_KEY"
KEY = "test-key-7f3a"  # a throwaway key for this module only
PROMPTS = ["The law says", "第一条 为了规范", "To be, or not to be"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _llm_replica_pids() -> set[int]:
    from soaes.serve.deploy import llm_replica_pids

    return set(llm_replica_pids().values())


@pytest.fixture(scope="module")
def served(ray_session):
    """Deploy serve_apps/tiny_spec.yaml (key on, tight limits); yield its facts."""
    from ray import serve

    from soaes.serve.app import parse_args
    from soaes.serve.deploy import base_url, deploy, load_serve_config
    from soaes.serve.models import resolve_models

    os.environ[KEY_ENV] = KEY
    a = "applications.0.args."
    schema = load_serve_config(
        ROOT / "serve_apps" / "tiny_spec.yaml",
        [
            f"http_options.port={_free_port()}",
            f"{a}api_key_env={KEY_ENV}",
            f"{a}deployment.max_ongoing_requests=4",
            f"{a}deployment.max_queued_requests=4",
            f"{a}deployment.autoscaling.max_replicas=1",
            f"{a}deployment.autoscaling.target_ongoing_requests=2",
        ],
    )
    serve.shutdown()  # this module's own Serve instance, with its own HTTP options
    deploy(schema)
    cfg = parse_args(schema.applications[0].args)
    yield {"url": base_url(schema), "cfg": cfg, "models": resolve_models(cfg)}
    serve.shutdown()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def test_openai_client_completion_chat_and_streaming(served):
    client, model = _client(served["url"]), served["cfg"].model_id
    assert [m.id for m in client.models.list().data] == [model]
    done = client.completions.create(model=model, prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert done.usage.completion_tokens == 12 and done.choices[0].text
    msgs = [{"role": "user", "content": "什么是公司法？"}]
    chat = client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0)
    assert chat.choices[0].message.content and chat.usage.completion_tokens == 12
    stream = client.chat.completions.create(
        model=model, messages=msgs, max_tokens=12, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == chat.choices[0].message.content  # SSE pieces add up to the same answer


@pytest.mark.timeout(1500)
def test_greedy_output_equals_offline_vllm(tiny_recipe):
    """The tiny recipe's serve_bench stage (SFT target + distilled draft, over HTTP through
    Serve) sent the same greedy prompts to the spec app, the target-alone app and both
    in-process vLLM engines: all four outputs are equal, and the drafts really ran."""
    import json

    bench = json.loads((tiny_recipe.stage("serve_bench") / "bench.json").read_text())
    single, load = bench["single_stream"], bench["load"]
    assert single["prompts"] >= 2 and single["identical_outputs_all_four"] is True
    acc = single["acceptance"]
    assert acc["requests_ok"] == single["prompts"] and acc["spec_drafts"] > 0
    assert acc["spec_draft_tokens"] == bench["k"] * acc["spec_drafts"]
    assert load["ok"] == load["requests"] and load["no_replica_died"] is True
    assert 0 < load["completion_tokens"] <= load["requests"] * single["max_tokens"]


def test_spec_decode_counters_move(served, capsys):
    from soaes.cli import main
    from soaes.serve import metrics as m

    model, k = served["cfg"].model_id, served["models"].num_speculative_tokens
    before = m.vllm_counters(m.scrape(), model)
    client = _client(served["url"])
    for p in PROMPTS:
        client.completions.create(model=model, prompt=p, max_tokens=16, temperature=0)
    after = m.wait_for_counters(model, "drafts", before["drafts"] + 1, timeout_s=90)
    d = m.delta(after, before)
    assert d["drafts"] > 0, "vLLM's spec-decode counters never reached Ray's metrics port"
    assert d["draft_tokens"] == k * d["drafts"]  # every step proposes k draft tokens
    assert 0 <= d["accepted_tokens"] <= d["draft_tokens"]
    assert d["requests_ok"] >= len(PROMPTS)
    assert main(["serve", "status"]) == 0
    out = capsys.readouterr().out
    assert "acceptance_rate" in out and "mean_acceptance_length" in out and model in out


BAD_REQUESTS = [
    # (name, path, json body or raw bytes, expected status, words the message must contain)
    ("malformed json", "/v1/completions", b'{"model": "x", "prompt": ', 400, "JSON"),
    ("unknown model", "/v1/completions", {"model": "nope", "prompt": "hi"}, 404, "nope"),
    ("prompt too long", "/v1/completions", {"prompt": "hello " * 3000}, 400, "context length"),
    (
        "prompt over max_model_len in tokens",
        "/v1/completions",
        {"prompt": "lawful " * 700},
        400,
        "context length",
    ),
    (
        "max_tokens too large",
        "/v1/completions",
        {"prompt": "hi", "max_tokens": 100000},
        400,
        "max_tokens",
    ),
    (
        "max_tokens negative",
        "/v1/completions",
        {"prompt": "hi", "max_tokens": -3},
        400,
        "max_tokens",
    ),
    (
        "out-of-vocabulary token id",
        "/v1/completions",
        {"prompt": [5, 10**6], "max_tokens": 4},
        400,
        "token",
    ),
    ("messages not a list", "/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
    (
        "temperature negative",
        "/v1/completions",
        {"prompt": "hi", "temperature": -1},
        400,
        "temperature",
    ),
    ("body too large", "/v1/completions", {"prompt": "x" * 2_000_000}, 413, "exceeds"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_4xx_with_message(served, case):
    _, path, body, status, words = case
    headers = {**_auth(), "content-type": "application/json"}
    if isinstance(body, dict):
        body = {"model": served["cfg"].model_id, **body}
        r = httpx.post(served["url"] + path, json=body, headers=headers, timeout=60)
    else:
        r = httpx.post(served["url"] + path, content=body, headers=headers, timeout=60)
    assert r.status_code == status, r.text[:500]
    assert words.lower() in r.text.lower(), r.text[:500]


def test_replica_survives_bad_requests(served):
    # Runs after the bad-request cases: the same replica process still answers.
    pids = _llm_replica_pids()
    client = _client(served["url"])
    model = served["cfg"].model_id
    assert client.completions.create(model=model, prompt="ok", max_tokens=4).choices[0].text
    assert len(pids) == 1 and _llm_replica_pids() == pids


def test_api_key_enforced(served):
    import openai

    url, model = served["url"], served["cfg"].model_id
    body = {"model": model, "prompt": "hi", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert httpx.get(url + "/v1/models", timeout=30).status_code == 401
    bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.post(url + "/v1/completions", json=body, headers=_auth(), timeout=60).is_success


def test_overload_is_answered_200_or_503_and_no_replica_dies(served):
    from soaes.serve.load import run_load, summarize

    pids = _llm_replica_pids()
    results, wall_s = asyncio.run(
        run_load(
            served["url"],
            served["cfg"].model_id,
            PROMPTS,
            num_requests=200,
            concurrency=16,
            max_tokens=16,
            api_key=KEY,
        )
    )
    statuses = Counter(r.status for r in results)
    print(summarize(results, wall_s))
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] >= 8 and statuses[503] > 0  # served up to capacity, rest shed
    assert all(r.completion_tokens == 16 for r in results if r.status == 200)
    shed = [r for r in results if r.status == 503]
    assert all("backpressure" in r.error for r in shed), shed[0].error
    assert _llm_replica_pids() == pids
