"""Per-step costs of speculative decoding with vLLM, prefill excluded (``soaes bench spec``).

Method (see :mod:`soaes.eval.spec_bound` for the model):

* **Decode step** of an engine (target alone, draft alone, or target + draft): greedy
  generation with ``ignore_eos`` to exactly ``N+1`` and to 1 token, same prompts, prefix
  cache warmed first so both calls prefill alike; ``(T(N+1) - T(1)) / N`` is the seconds
  per emitted token after the first, i.e. per decode step for a plain engine. Batch 1: each
  prompt alone, summed; batch b: b prompts per call.
* **Verification** ``v(k)`` in the target-alone engine: a one-token generation whose prompt
  is a cached prefix (a multiple of the KV block) plus ``k+1`` new tokens computes exactly
  the ``k+1``-token forward of a verification; against the same with one new token it gives
  the marginal cost of k more query tokens (the extra positions' logits and vLLM's
  rejection sampler are not in it, so the bound stays an upper bound).
* Repetitions alternate the short and long calls (and all k) inside one engine, so slow
  phases of a loaded machine hit both sides of every difference.

Acceptance comes from vLLM's counters differenced around the measured long calls.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from soaes.config.inference import EngineConfig
from soaes.eval.acceptance import SpecCounters, acceptance_stats, read_counters
from soaes.eval.spec_bound import decode_step_s, spread, verify_ratio
from soaes.inference.engine import close_llm, new_llm

log = logging.getLogger(__name__)


def spec_llm(model: str, engine: EngineConfig, speculative_config: dict | None = None) -> Any:
    """A ``vllm.LLM`` with counters on and prefix caching explicitly on (the method needs it)."""
    kwargs = {"enable_prefix_caching": True, **engine.llm_kwargs()}
    return new_llm(
        model=model,
        speculative_config=speculative_config,
        disable_log_stats=False,
        **kwargs,
    )


def timed_greedy(llm: Any, prompts: list[dict], max_tokens: int) -> tuple[list[list[int]], float]:
    """Greedy generation of exactly ``max_tokens`` per prompt (``ignore_eos``): (ids, s)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs], time.perf_counter() - t0


def _batches(prompts: list[dict], batch_size: int) -> list[list[dict]]:
    return [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]


def decode_rep(llm: Any, prompts: list[dict], batch_size: int, extra_steps: int) -> dict:
    """One repetition: per-token decode seconds at ``batch_size`` and the long outputs."""
    short_s, long_s, tokens = 0.0, 0.0, []
    for batch in _batches(prompts, batch_size):
        short_s += timed_greedy(llm, batch, 1)[1]
        out, seconds = timed_greedy(llm, batch, extra_steps + 1)
        long_s += seconds
        tokens += out
    calls = len(_batches(prompts, batch_size))
    return {
        "step_s": decode_step_s(long_s, short_s, extra_steps) / calls,
        "tokens": tokens,
    }


def measure_decode(
    llm: Any,
    prompts: dict[int, list[dict]],
    extra_steps: dict[int, int],
    repetitions: int,
    speculative: bool,
) -> dict[str, Any]:
    """Decode-step seconds per batch size (``prompts[b]`` decoded b at a time), repeated.

    Returns:
        ``{"batch<b>": {"step_s": [per rep], "step_s_spread": …, "acceptance": …}}`` and
        ``tokens`` (the long outputs of the first repetition, per batch size).
    """
    for b, ps in prompts.items():  # warm-up: one-off costs, and fills the prefix cache
        for batch in _batches(ps, b):
            timed_greedy(llm, batch, 2)
    out: dict[str, Any] = {"tokens": {}}
    runs: dict[int, list[dict]] = {b: [] for b in prompts}
    counters = {b: SpecCounters() for b in prompts}
    for _ in range(repetitions):
        for b, ps in prompts.items():
            before = read_counters(llm)
            runs[b].append(decode_rep(llm, ps, b, extra_steps[b]))
            counters[b] = counters[b] + (read_counters(llm) - before)
    for b, reps in runs.items():
        steps = [r["step_s"] for r in reps]
        row: dict[str, Any] = {"step_s": steps, "step_s_spread": spread(steps)}
        row["outputs_stable"] = all(r["tokens"] == reps[0]["tokens"] for r in reps)
        if speculative:
            row["acceptance"] = acceptance_stats(counters[b])
        out[f"batch{b}"] = row
        out["tokens"][b] = reps[0]["tokens"]
    return out


def verify_prompts(sequences: list[list[int]], block: int, max_k: int) -> list[list[int]]:
    """Sequences long enough for a cached prefix of whole KV blocks plus ``max_k+1`` tokens,
    cut to ``prefix + max_k + 1`` (prefix: the largest multiple of ``block`` that fits);
    shorter ones are repeated end to end until they fit."""
    out = []
    for seq in sequences:
        if seq and len(seq) < block + max_k + 1:  # tiled: the cost depends on length only
            seq = seq * -(-(block + max_k + 1) // len(seq))
        prefix = (len(seq) - (max_k + 1)) // block * block
        if prefix >= block:
            out.append(seq[: prefix + max_k + 1])
    return out


def measure_verify(
    llm: Any,
    sequences: list[list[int]],
    ks: list[int],
    batch_size: int,
    step_s: list[float],
    block: int,
) -> dict[str, Any]:
    """``v_k`` (verification of k+1 tokens / decode step) per k at ``batch_size``, repeated.

    ``step_s`` is the engine's decode-step seconds per repetition at this batch size (paired
    with the verification timings of the same repetition).
    """
    seqs = verify_prompts(sequences, block, max(ks))
    if len(seqs) < batch_size:  # e.g. the tiny preset's short prompts: no bound, say why
        reason = (
            f"{len(seqs)} sequences longer than one KV block ({block}) + {max(ks) + 1} "
            f"tokens, {batch_size} needed: generate more tokens or use longer prompts"
        )
        log.warning("verification not measured: %s", reason)
        return {"batch": batch_size, "v_k": {}, "v_k_reps": {}, "skipped": reason}
    top = max(ks)
    calls = [
        {k: [{"prompt_token_ids": s[: len(s) - top + k]} for s in batch] for k in [0, *ks]}
        for batch in _batches(seqs[: len(seqs) // batch_size * batch_size], batch_size)
    ]
    for call in calls:
        timed_greedy(llm, call[top], 1)  # caches the prefixes
    ratios: dict[int, list[float]] = {k: [] for k in ks}
    for rep_step in step_s:
        seconds = {k: 0.0 for k in [0, *ks]}
        for call in calls:
            for k, ps in call.items():
                seconds[k] += timed_greedy(llm, ps, 1)[1] / len(calls)
        for k in ks:
            ratios[k].append(verify_ratio(seconds[k], seconds[0], rep_step, k))
    return {
        "batch": batch_size,
        "calls_per_rep": len(calls),
        "v_k": {k: spread(v) for k, v in ratios.items()},
        "v_k_reps": ratios,
    }


def run_candidate(
    model: str,
    engine: EngineConfig,
    speculative_config: dict | None,
    prompts: dict[int, list[dict]],
    extra_steps: dict[int, int],
    repetitions: int,
    verify_ks: list[int] | None = None,
) -> dict[str, Any]:
    """Start one engine, measure decode (and, for the target, verification), close it."""
    llm = spec_llm(model, engine, speculative_config)
    try:
        result = measure_decode(
            llm, prompts, extra_steps, repetitions, speculative_config is not None
        )
        if verify_ks:
            block = llm.llm_engine.vllm_config.cache_config.block_size
            result["verify"] = {}
            for b, toks in result["tokens"].items():
                seqs = [p["prompt_token_ids"] + t for p, t in zip(prompts[b], toks, strict=True)]
                step_s = result[f"batch{b}"]["step_s"]
                result["verify"][f"batch{b}"] = measure_verify(
                    llm, seqs, verify_ks, b, step_s, block
                )
        return result
    finally:
        close_llm(llm)


def eagle3_cost_ratio(
    target: str, head_dir: str, batch: int, repetitions: int, context: int = 256
) -> dict[str, float | int]:
    """``c`` of an EAGLE-3 head: one draft step over one target decode step, both timed in
    PyTorch at ``batch`` with ``context`` cached positions (a head cannot run in vLLM
    without its target, so this is the one framework both run in alone).

    The target step is HF's one-token forward with a KV cache; the head step is its layer
    on one new position attending to ``context`` cached keys, plus its output layer.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from soaes.models.eagle3 import load_head

    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    head = load_head(head_dir).eval()
    ids = torch.randint(3, 1000, (batch, context))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
        step_ids = ids[:, -1:]
        hidden = torch.randn(batch, 1, head.cfg["hidden_size"])
        kv = torch.randn(batch, head.n_heads, context, head.head_dim)
        pos = torch.tensor([context])

        def target_step() -> None:
            model(step_ids, past_key_values=cache, use_cache=True)
            cache.crop(context)

        def head_step() -> None:
            res, q, k, v = head.qkv(model.get_input_embeddings()(step_ids), hidden, pos)
            att = torch.softmax(q @ torch.cat([kv, k], 2).transpose(-1, -2), -1)
            head.finish(att @ torch.cat([kv, v], 2), res)

        ratios = [_median_s(head_step) / _median_s(target_step) for _ in range(repetitions)]
    return spread(ratios)


def _median_s(fn: Any, calls: int = 20) -> float:
    """Median seconds of ``calls`` calls of ``fn`` after two warm-up calls."""
    import statistics

    for _ in range(2):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
