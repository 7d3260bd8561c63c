"""Acceptance and speed of target + draft under vLLM speculative decoding.

vLLM's own counters are the source of truth: ``vllm:spec_decode_num_drafts``,
``…_num_draft_tokens``, ``…_num_accepted_tokens`` and ``…_num_accepted_tokens_per_pos``,
read from ``LLM(..., disable_log_stats=False).get_metrics()`` and differenced around each
measured call (counters are process-wide and a new engine resets them).

With ``k`` drafted tokens per step, a draft/target step-cost ratio ``c`` and a per-token
acceptance probability ``α`` (i.i.d. model), the expected tokens per target step are
``L = (1-α^(k+1))/(1-α)`` and the textbook speed-up bound is ``L/(k·c+1)`` (Leviathan et
al. 2023). α is fitted from the measured mean acceptance length; c is measured by timing
the draft alone against the target alone. The best k (highest measured speed-up, or bound
when speed is not measured) is written to ``spec_decode.json`` for serving.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soaes.config.distill import AcceptanceConfig
from soaes.config.inference import EngineConfig
from soaes.inference.engine import close_llm

log = logging.getLogger(__name__)

SPEC_DECODE_FILE = "spec_decode.json"
_PREFIX = "vllm:spec_decode_"


@dataclass(frozen=True)
class SpecCounters:
    """Snapshot of vLLM's speculative-decoding counters."""

    drafts: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    accepted_per_pos: tuple[int, ...] = field(default_factory=tuple)

    def __sub__(self, other: SpecCounters) -> SpecCounters:
        return self._combine(other, -1)

    def __add__(self, other: SpecCounters) -> SpecCounters:
        return self._combine(other, 1)

    def _combine(self, other: SpecCounters, sign: int) -> SpecCounters:
        n = max(len(self.accepted_per_pos), len(other.accepted_per_pos))
        a = list(self.accepted_per_pos) + [0] * (n - len(self.accepted_per_pos))
        b = list(other.accepted_per_pos) + [0] * (n - len(other.accepted_per_pos))
        return SpecCounters(
            self.drafts + sign * other.drafts,
            self.draft_tokens + sign * other.draft_tokens,
            self.accepted_tokens + sign * other.accepted_tokens,
            tuple(x + sign * y for x, y in zip(a, b, strict=True)),
        )


def read_counters(llm: Any) -> SpecCounters:
    """Current spec-decode counters of ``llm`` (summed over label sets, e.g. engines)."""
    from vllm.v1.metrics.reader import Counter, Vector

    totals = {"num_drafts": 0, "num_draft_tokens": 0, "num_accepted_tokens": 0}
    per_pos: list[int] = []
    for m in llm.get_metrics():
        name = m.name.removeprefix(_PREFIX)
        if isinstance(m, Counter) and name in totals:
            totals[name] += m.value
        elif isinstance(m, Vector) and name == "num_accepted_tokens_per_pos":
            per_pos += [0] * (len(m.values) - len(per_pos))
            for i, v in enumerate(m.values):
                per_pos[i] += v
    return SpecCounters(
        totals["num_drafts"],
        totals["num_draft_tokens"],
        totals["num_accepted_tokens"],
        tuple(per_pos),
    )


def acceptance_stats(c: SpecCounters) -> dict[str, Any]:
    """Acceptance rate, mean acceptance length and per-position acceptance of a counter delta.

    * acceptance_rate = accepted / drafted tokens;
    * mean_acceptance_length = 1 + accepted / drafts (tokens emitted per target step);
    * per_position[i] = share of drafts whose token i was accepted (i.e. tokens 0..i all
      were), non-increasing in i.
    """
    if c.drafts <= 0:
        raise ValueError(
            "no speculative steps were counted: is speculation on and disable_log_stats=False?"
        )
    return {
        "drafts": c.drafts,
        "draft_tokens": c.draft_tokens,
        "accepted_tokens": c.accepted_tokens,
        "acceptance_rate": c.accepted_tokens / max(c.draft_tokens, 1),
        "mean_acceptance_length": 1.0 + c.accepted_tokens / c.drafts,
        "per_position": [x / c.drafts for x in c.accepted_per_pos],
    }


def expected_length(alpha: float, k: int) -> float:
    """Expected tokens per target step, ``(1-α^(k+1))/(1-α)``, for i.i.d. acceptance α."""
    return float(k + 1) if alpha >= 1.0 else (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def theoretical_speedup(alpha: float, k: int, c: float) -> float:
    """Leviathan et al.'s bound ``(1-α^(k+1))/((1-α)(k·c+1))``."""
    return expected_length(alpha, k) / (k * c + 1.0)


def fit_alpha(mean_length: float, k: int) -> float:
    """The i.i.d. per-token acceptance α whose expected length at ``k`` is ``mean_length``."""
    if mean_length >= k + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):  # expected_length is increasing in α: bisection
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_length(mid, k) < mean_length else (lo, mid)
    return lo


def make_llm(model: str, engine: EngineConfig, draft: str | None = None, k: int = 0) -> Any:
    """A ``vllm.LLM`` for ``model``, speculating with ``draft`` (k tokens) when given.

    Build it inside a function (ENVIRONMENT.md: creating LLM at import time fails).
    """
    from soaes.inference.engine import new_llm

    spec = None
    if draft is not None:
        spec = {"method": "draft_model", "model": draft, "num_speculative_tokens": k}
    return new_llm(
        model=model, speculative_config=spec, disable_log_stats=False, **engine.llm_kwargs()
    )


def timed_generate(
    llm: Any, prompts: list[str], max_tokens: int, batch_size: int | None = None
) -> tuple[list[list[int]], float]:
    """Greedy generation, ``batch_size`` prompts at a time (None: all): (ids per prompt, s)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    step = batch_size or len(prompts)
    tokens, seconds = [], 0.0
    for i in range(0, len(prompts), step):
        t0 = time.perf_counter()
        outs = llm.generate(prompts[i : i + step], params, use_tqdm=False)
        seconds += time.perf_counter() - t0
        tokens += [list(o.outputs[0].token_ids) for o in outs]
    return tokens, seconds


def run_engine(
    model: str,
    engine: EngineConfig,
    prompts: list[str],
    max_tokens: int,
    draft: str | None = None,
    k: int = 0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Start one engine, warm it up, time greedy generation and read the counters.

    Returns:
        ``tokens`` (ids per prompt), ``seconds``, ``tokens_per_s`` and, when speculating,
        the acceptance statistics of the timed call only.
    """
    llm = make_llm(model, engine, draft, k)
    try:
        timed_generate(llm, prompts[:1], 4)  # warm-up: first call pays one-off costs
        before = read_counters(llm)
        tokens, seconds = timed_generate(llm, prompts, max_tokens, batch_size)
        result: dict[str, Any] = {
            "tokens": tokens,
            "seconds": seconds,
            "tokens_per_s": sum(map(len, tokens)) / seconds,
        }
        if draft is not None:
            result.update(acceptance_stats(read_counters(llm) - before))
        return result
    finally:
        close_llm(llm)


def measure_acceptance(
    target: str,
    draft: str,
    prompts: list[str],
    cfg: AcceptanceConfig,
    baseline: dict[str, Any] | None = None,
    c: float | None = None,
) -> dict[str, Any]:
    """Acceptance (and, if configured, speed) of ``draft`` for ``target`` over several k.

    Runs the target alone (unless ``baseline`` is given) and the draft alone (unless ``c``
    is given) for c and the reference outputs, then target + draft for each k on the same
    prompts, greedy. Every speculative run's outputs are compared with the target's own.

    Returns:
        A JSON-able summary: per-k rows, c, the best k.
    """
    if cfg.measure_speed:
        baseline = baseline or run_engine(
            target, cfg.engine, prompts, cfg.max_tokens, batch_size=cfg.batch_size
        )
        if c is None:
            alone = run_engine(
                draft, cfg.engine, prompts, cfg.max_tokens, batch_size=cfg.batch_size
            )
            c = baseline["tokens_per_s"] / alone["tokens_per_s"]
    rows = []
    for k in cfg.num_speculative_tokens:
        r = run_engine(
            target, cfg.engine, prompts, cfg.max_tokens, draft, k, batch_size=cfg.batch_size
        )
        alpha = fit_alpha(r["mean_acceptance_length"], k)
        row = {"k": k, **{key: v for key, v in r.items() if key != "tokens"}, "alpha": alpha}
        if baseline is not None:
            row["outputs_identical"] = r["tokens"] == baseline["tokens"]
            row["speedup_measured"] = r["tokens_per_s"] / baseline["tokens_per_s"]
            row["speedup_theoretical"] = theoretical_speedup(alpha, k, c)
        rows.append(row)
        log.info(
            "%s k=%d acceptance %.3f mean length %.3f%s",
            Path(draft).name,
            k,
            row["acceptance_rate"],
            row["mean_acceptance_length"],
            f" speed-up {row['speedup_measured']:.2f}x" if baseline else "",
        )
    key = "speedup_measured" if baseline is not None else "mean_acceptance_length"
    best = max(rows, key=lambda r: r[key])
    return {
        "target": target,
        "draft": str(Path(draft).resolve()),
        "num_prompts": len(prompts),
        "max_tokens": cfg.max_tokens,
        "c": c,
        "target_tokens_per_s": baseline["tokens_per_s"] if baseline else None,
        "best_k": best["k"],
        "rows": rows,
        "_baseline": baseline,
    }


def _shape(model_dir: str) -> tuple:
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return tuple(
        cfg.get(k)
        for k in (
            "model_type",
            "num_hidden_layers",
            "hidden_size",
            "intermediate_size",
            "vocab_size",
        )
    )


def compare_drafts(
    target: str,
    drafts: dict[str, str],
    cfg: AcceptanceConfig,
    out_dir: str | Path,
    serve: str | None = None,
) -> dict[str, Any]:
    """Measure several drafts of one target on the same held-out prompts.

    The target-alone run is shared, and c is measured once per draft shape. Writes
    ``acceptance.json`` (everything), ``acceptance_<name>.json`` (each draft's summary) and
    ``spec_decode.json`` for the ``serve`` draft (default: the last one) to ``out_dir``.

    Returns:
        ``{name: summary}`` plus ``length_ratio``: the mean acceptance length of the served
        draft over each other draft's, per k.
    """
    from transformers import AutoTokenizer

    from soaes.data.prompts import load_prompts

    prompts = load_prompts(cfg.prompts, AutoTokenizer.from_pretrained(target))
    baseline, costs, results = None, {}, {}
    for name, draft in drafts.items():
        r = measure_acceptance(target, draft, prompts, cfg, baseline, costs.get(_shape(draft)))
        baseline, costs[_shape(draft)] = r.pop("_baseline"), r["c"]
        results[name] = r
    serve = serve or list(drafts)[-1]
    out: dict[str, Any] = {"drafts": results, "served": serve, "length_ratio": {}}
    for name, r in results.items():
        if name != serve:
            out["length_ratio"][name] = {
                row["k"]: s_row["mean_acceptance_length"] / row["mean_acceptance_length"]
                for row, s_row in zip(r["rows"], results[serve]["rows"], strict=True)
            }
    write_spec_decode(out_dir, results[serve])
    for name, r in results.items():  # one file per draft, e.g. for the recipe's report
        (Path(out_dir) / f"acceptance_{name}.json").write_text(json.dumps(r, indent=2))
    (Path(out_dir) / "acceptance.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


def write_spec_decode(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``<out_dir>/spec_decode.json``, the file the serving app reads.

    ``num_speculative_tokens`` is the best k; ``speculative_config`` can be passed to vLLM
    as is; the rest records the measurement that chose it.
    """
    best = next(r for r in summary["rows"] if r["k"] == summary["best_k"])
    body = {
        "num_speculative_tokens": summary["best_k"],
        "speculative_config": {
            "method": "draft_model",
            "model": summary["draft"],
            "num_speculative_tokens": summary["best_k"],
        },
        "target": summary["target"],
        "draft": summary["draft"],
        "c": summary["c"],
        "acceptance_rate": best["acceptance_rate"],
        "mean_acceptance_length": best["mean_acceptance_length"],
        "speedup_measured": best.get("speedup_measured"),
        "rows": summary["rows"],
    }
    path = Path(out_dir) / SPEC_DECODE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
