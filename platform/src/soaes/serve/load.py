"""A small OpenAI-API load generator: concurrent streaming requests, per-request timings.

Streaming (SSE) requests give the time to first token; ``stream_options.include_usage``
gives the exact completion token count. Every answer is recorded with its status, so a
load run can show that overload is answered with 429/503 and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Result:
    """One request's outcome."""

    status: int  # HTTP status; 0 when the connection failed or broke mid-stream
    latency_s: float
    ttft_s: float | None = None
    completion_tokens: int = 0
    text: str = ""
    error: str = ""


def _body(model: str, prompt: str | list[dict], max_tokens: int, stream: bool) -> dict:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": stream,
    }
    if isinstance(prompt, str):
        body["prompt"] = prompt
    else:
        body["messages"] = prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _chunk_text(chunk: dict) -> str:
    choices = chunk.get("choices") or [{}]
    c = choices[0]
    return c.get("text") or (c.get("delta") or {}).get("content") or ""


async def one_request(
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    prompt: str | list[dict],
    max_tokens: int,
    stream: bool = True,
) -> Result:
    """Send one completion (str prompt) or chat (message list) request; never raises."""
    path = "/v1/completions" if isinstance(prompt, str) else "/v1/chat/completions"
    t0 = time.perf_counter()
    res = Result(status=0, latency_s=0.0)
    try:
        async with client.stream(
            "POST", base_url + path, json=_body(model, prompt, max_tokens, stream)
        ) as r:
            res.status = r.status_code
            if r.status_code != 200 or not stream:
                raw = await r.aread()
                _read_whole(res, raw)
            else:
                await _read_stream(res, r, t0)
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        res.error = f"{type(e).__name__}: {e}"
        if res.status == 200:
            res.status = 0  # the stream broke: an in-flight failure, not a success
    res.latency_s = time.perf_counter() - t0
    return res


def _read_whole(res: Result, raw: bytes) -> None:
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        res.error = raw[:300].decode(errors="replace")
        return
    if res.status != 200:
        err = body.get("error") if isinstance(body, dict) else None
        res.error = str(err.get("message") if isinstance(err, dict) else body)[:300]
        return
    res.text = _chunk_text(body) or (body["choices"][0].get("message") or {}).get("content", "")
    res.completion_tokens = int((body.get("usage") or {}).get("completion_tokens", 0))


async def _read_stream(res: Result, r: httpx.Response, t0: float) -> None:
    parts, done = [], False
    async for line in r.aiter_lines():
        if line == "data: [DONE]":
            done = True
            continue
        if not line.startswith("data: "):
            continue
        chunk = json.loads(line[6:])
        if "error" in chunk:  # an error after the 200 header arrives as an SSE event
            res.status, res.error = 0, str(chunk["error"])[:300]
            return
        text = _chunk_text(chunk)
        if text and res.ttft_s is None:
            res.ttft_s = time.perf_counter() - t0
        parts.append(text)
        if chunk.get("usage"):
            res.completion_tokens = int(chunk["usage"].get("completion_tokens", 0))
    res.text = "".join(parts)
    if not done:  # the server went away mid-answer (e.g. its replica died): not a success
        res.status, res.error = 0, f"stream ended without [DONE] after {len(parts)} chunks"


async def run_load(
    base_url: str,
    model: str,
    prompts: list,
    num_requests: int,
    concurrency: int,
    max_tokens: int,
    api_key: str | None = None,
    stream: bool = True,
    timeout_s: float = 300.0,
) -> tuple[list[Result], float]:
    """Send ``num_requests`` requests (prompts cycled) with at most ``concurrency`` in flight.

    Returns:
        The results in request order and the wall time in seconds.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers, limits=limits) as client:

        async def bounded(i: int) -> Result:
            async with sem:
                return await one_request(
                    client, base_url, model, prompts[i % len(prompts)], max_tokens, stream
                )

        t0 = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(num_requests)))
        return list(results), time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summarize(results: list[Result], wall_s: float) -> dict[str, Any]:
    """Throughput, latency and TTFT percentiles of the successful requests; counts by status."""
    ok = [r for r in results if r.status == 200]
    by_status: dict[str, int] = {}
    for r in results:
        by_status[str(r.status)] = by_status.get(str(r.status), 0) + 1
    lat = [r.latency_s for r in ok]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    tokens = sum(r.completion_tokens for r in ok)
    return {
        "requests": len(results),
        "ok": len(ok),
        "by_status": dict(sorted(by_status.items())),
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s else None,
        "tokens_per_s": tokens / wall_s if wall_s else None,
        "completion_tokens": tokens,
        "latency_p50_s": percentile(lat, 50),
        "latency_p99_s": percentile(lat, 99),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
    }
