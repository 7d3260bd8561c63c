"""``soaes bench serve``: the Serve spec-decoding app under measurement, in one run.

1. Single stream, greedy, same prompts, interleaved prompt by prompt so that machine load
   hits all four alike: target + draft and target alone, each over HTTP through Serve and
   in-process in vLLM with the replica's exact engine config. Outputs must be identical;
   ratios: speculation speed-up over HTTP vs offline, Serve overhead (HTTP / in-process).
2. Load: N requests at concurrency C (streaming): throughput, p50/p99 latency and TTFT,
   answers by status, acceptance from vLLM's counters on Ray's metrics port, replica deaths.
3. Fault: the vLLM replica process is killed during load: failed in-flight requests,
   time until the replacement serves, and whether later requests succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from soaes.bench.serve_report import report_fault, report_load, report_single
from soaes.serve import metrics as m
from soaes.serve.load import run_load, summarize

ROOT_APP = "serve_apps/tiny_spec.yaml"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(prog="soaes bench serve", description=__doc__.splitlines()[0])
    p.add_argument("--app", default=ROOT_APP, help="Serve config with the spec-decoding app")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides of the file")
    p.add_argument("--requests", type=int, default=200, help="requests in the load phase")
    p.add_argument("--concurrency", type=int, default=16, help="in-flight requests under load")
    p.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    p.add_argument("--single-prompts", type=int, default=8, help="prompts in the 1-stream phase")
    p.add_argument("--prompts", default=None, help="jsonl of {prompt}|{messages} (eval set)")
    p.add_argument("--no-kill", action="store_true", help="skip the replica-kill phase")
    p.add_argument(
        "--single-only", action="store_true", help="only the single-stream phase (no load, kill)"
    )
    p.add_argument("--num-cpus", type=int, default=4, help="embedded Ray's logical CPUs")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    return p.parse_args(argv)


def law_questions(n: int) -> list[list[dict]]:
    """Built-in domain prompts: questions about real law articles (every 10th: eval split)."""
    from soaes.assets.fetch import require

    con = sqlite3.connect(f"file:{require('laws') / 'laws.db'}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT law_name, article_no FROM articles WHERE status = '现行有效' ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    picked = rows[::10][:n]
    return [[{"role": "user", "content": f"《{law}》{no or ''}规定了什么？"}] for law, no in picked]


def load_prompts(path: str | None, n: int) -> list[list[dict]]:
    """Chat prompts from a jsonl eval set ({'prompt'} or {'messages'}) or the law questions."""
    if path is None:
        return law_questions(n)
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            items.append(rec.get("messages") or [{"role": "user", "content": rec["prompt"]}])
    return items[:n]


def render(prompts: list[list[dict]], tokenizer_dir: str) -> list[str]:
    """Chat prompts rendered with the model's template: the same string goes over HTTP and
    into the in-process engine, so both tokenize identically."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


def http_complete(client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int):
    """One greedy completion over HTTP: (text, tokens, seconds)."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    t0 = time.perf_counter()
    r = client.post(url + "/v1/completions", json=body)
    r.raise_for_status()
    out = r.json()
    return out["choices"][0]["text"], out["usage"]["completion_tokens"], time.perf_counter() - t0


def settled_counters(model: str, quiet_s: float = 12.0, timeout_s: float = 90.0) -> dict:
    """vLLM counters once Ray's export has caught up (unchanged for ``quiet_s``)."""
    deadline = time.monotonic() + timeout_s
    last, since = m.vllm_counters(m.scrape(), model), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(3.0)
        now = m.vllm_counters(m.scrape(), model)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return last


def deploy_pair(cfg: Any) -> dict[str, dict[str, str]]:
    """Deploy the spec app at /spec and the same app without speculation at /plain."""
    from ray import serve

    from soaes.serve.app import build_app

    plain = cfg.model_copy(update={"speculation": None, "model_id": cfg.model_id + "-plain"})
    apps = {
        "spec": {"model": cfg.model_id, "prefix": "/spec", "cfg": cfg},
        "plain": {"model": plain.model_id, "prefix": "/plain", "cfg": plain},
    }
    serve.run_many(  # both replicas start side by side
        [
            serve.RunTarget(build_app(a["cfg"]), name=f"bench-{name}", route_prefix=a["prefix"])
            for name, a in apps.items()
        ]
    )
    return apps


def phase_single_stream(
    url: str, apps: dict, llms: dict, prompts: list[str], max_tokens: int, headers: dict
) -> dict[str, Any]:
    """Spec and plain over HTTP, spec and plain in-process, alternating prompt by prompt.

    ``llms`` holds the in-process engines ({"spec": …, "plain": …}) built from the same
    configs as the two apps, so each HTTP ratio has its offline counterpart.
    """
    from soaes.inference.engine import generate_one

    rows: dict[str, list] = {"spec": [], "plain": [], "inproc_spec": [], "inproc_plain": []}
    with httpx.Client(timeout=300, headers=headers) as client:
        for name in ("spec", "plain"):  # warm-up: first requests pay one-off costs
            http_complete(client, url + apps[name]["prefix"], apps[name]["model"], prompts[0], 4)
            generate_one(llms[name], prompts[0], 4)
        before = settled_counters(apps["spec"]["model"])
        for p in prompts:
            for name in ("spec", "plain"):
                a = apps[name]
                rows[name].append(
                    http_complete(client, url + a["prefix"], a["model"], p, max_tokens)
                )
                rows[f"inproc_{name}"].append(
                    generate_one(llms[name], p, max_tokens, ignore_eos=True)
                )
    spec_counts = m.delta(settled_counters(apps["spec"]["model"]), before)
    tps = {k: sum(r[1] for r in v) / sum(r[2] for r in v) for k, v in rows.items()}
    texts = [[r[0] for r in v] for v in rows.values()]
    http_ratio = tps["spec"] / tps["plain"]
    offline_ratio = tps["inproc_spec"] / tps["inproc_plain"]
    return {
        "prompts": len(prompts),
        "max_tokens": max_tokens,
        "tokens_per_s": tps,
        "speedup_spec_vs_plain_http": http_ratio,
        "speedup_spec_vs_plain_inproc": offline_ratio,
        "http_speedup_vs_offline_speedup": http_ratio / offline_ratio,
        "serve_overhead_http_vs_inproc": tps["spec"] / tps["inproc_spec"],
        "serve_overhead_plain": tps["plain"] / tps["inproc_plain"],
        "identical_outputs_all_four": all(t == texts[0] for t in texts),
        "acceptance": m.derive(spec_counts),
    }


def phase_load(
    url: str, app: dict, prompts: list, args: argparse.Namespace, key: str | None
) -> dict[str, Any]:
    """N streaming chat requests at concurrency C; acceptance and replica deaths alongside."""
    from soaes.serve.deploy import llm_replica_pids

    pids = llm_replica_pids("bench-spec")
    before = settled_counters(app["model"])
    results, wall_s = asyncio.run(
        run_load(
            url + app["prefix"],
            app["model"],
            prompts,
            args.requests,
            args.concurrency,
            args.max_tokens,
            api_key=key,
        )
    )
    out = summarize(results, wall_s)
    out["errors"] = sorted({r.error for r in results if r.status != 200})[:5]
    out["only_200_429_503"] = set(out["by_status"]) <= {"200", "429", "503"}
    after = llm_replica_pids("bench-spec")
    # Autoscaling may add replicas under load; none of the ones serving before may die.
    out["replicas_before_after"] = [len(pids), len(after)]
    out["no_replica_died"] = set(pids.values()) <= set(after.values())
    out["acceptance"] = m.derive(m.delta(settled_counters(app["model"]), before))
    return out


def _progress(msg: str) -> None:
    print(f"[bench serve {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _save(res: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")


def run_phases(
    args: argparse.Namespace, cfg: Any, models: Any, url: str, res: dict[str, Any]
) -> None:
    """Deploy, then run the three phases, printing and saving each as it finishes."""
    from ray import serve

    from soaes.bench.serve_fault import phase_kill
    from soaes.inference.engine import close_llm
    from soaes.serve.llm import offline_llm
    from soaes.serve.models import resolve_models

    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    _progress("deploying the spec app (/spec) and the target-alone app (/plain)")
    apps = deploy_pair(cfg)
    chats = load_prompts(args.prompts, max(args.single_prompts, 32))
    single = render(chats[: args.single_prompts], models.tokenizer or models.target)
    _progress("single stream: spec / plain over HTTP and in-process vLLM, interleaved")
    llms = {"spec": offline_llm(cfg, models)}
    try:
        plain = apps["plain"]["cfg"]
        llms["plain"] = offline_llm(plain, resolve_models(plain))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        res["single_stream"] = phase_single_stream(
            url, apps, llms, single, args.max_tokens, headers
        )
    finally:
        for llm in llms.values():
            close_llm(llm)
    report_single(res)
    _save(res, args.out)
    if args.single_only:
        return
    serve.delete("bench-plain")  # the load phases need the CPU for the spec app only
    _progress(f"load: {args.requests} requests at concurrency {args.concurrency}")
    res["load"] = phase_load(url, apps["spec"], chats, args, key)
    report_load(res)
    _save(res, args.out)
    if not args.no_kill:
        _progress("fault: killing a vLLM replica process under load")
        res["fault"] = phase_kill(
            url + "/spec", "bench-spec", apps["spec"]["model"], chats, key, args.max_tokens
        )
        report_fault(res)
        _save(res, args.out)


def main(argv: list[str]) -> int:
    """Run the benchmark; returns 0 when every correctness check held. The caller's root
    logging is restored afterwards: Ray Serve's LLM modules switch the driver's root handlers
    to JSON records, which flooded a recipe's later stages."""
    root = logging.getLogger()
    saved = (root.level, [(h, h.formatter) for h in root.handlers])
    try:
        return _main(argv)
    finally:
        root.setLevel(saved[0])
        root.handlers = [h for h, _ in saved[1]]
        for h, fmt in saved[1]:
            h.setFormatter(fmt)


def _main(argv: list[str]) -> int:
    from ray import serve

    from soaes.ray_env import connect
    from soaes.serve.app import parse_args as parse_app
    from soaes.serve.deploy import http_options, load_serve_config
    from soaes.serve.models import resolve_models

    args = parse_args(argv)
    schema = load_serve_config(args.app, args.overrides)
    cfg = parse_app(schema.applications[0].args)
    models = resolve_models(cfg)
    if models.draft is None:
        print("error: the app has no speculation (pick a *_spec.yaml)", file=sys.stderr)
        return 2
    if cfg.accelerator == "cpu" and cfg.kv_cache_space_gib:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{cfg.kv_cache_space_gib:g}")
    connect(num_cpus=args.num_cpus)
    opts = {**http_options(schema), "port": _free_port()}  # never collide with a running app
    serve.start(http_options=opts)
    res: dict[str, Any] = {
        "app": args.app,
        "overrides": args.overrides,
        "target": models.target,
        "draft": models.draft,
        "k": models.num_speculative_tokens,
        "concurrency": args.concurrency,
    }
    try:
        run_phases(args, cfg, models, f"http://127.0.0.1:{opts['port']}", res)
    finally:
        serve.shutdown()
    ok = res["single_stream"]["identical_outputs_all_four"]
    if "load" in res:
        ok = ok and res["load"]["only_200_429_503"] and res["load"]["no_replica_died"]
    return 0 if ok else 1
