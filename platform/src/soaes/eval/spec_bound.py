"""Speculative-decoding cost model from measured per-step costs (pure functions).

One speculative step at batch ``b`` runs ``k`` draft steps and one target verification of
``k+1`` tokens per sequence, and emits ``E`` tokens per sequence on average (the measured
mean acceptance length, 1 + accepted / drafts). Plain decoding emits one token per target
step ``t``. So, per emitted token::

    spec:   (k * t_draft + v(k)) / E          plain:  t

    speedup = E / ((k * t_draft + v(k)) / t) = E / (k * c + v_k)

with ``c = t_draft / t`` (draft step over target step) and ``v_k = v(k) / t`` (verification
of k+1 tokens over one decode step; ``v_k = 1`` and ``c = 0`` give the no-cost limit E).
Leviathan et al.'s textbook form ``L/(k·c+1)`` is the special case ``v_k = 1``; on this CPU
verification is not free (ENVIRONMENT.md), so ``v_k`` is measured. What the bound leaves
out (the speculative path's own bookkeeping, rejection sampling, the draft's catch-up on
accepted tokens) is why measured speed-ups fall short of it: ``speedup / bound`` is
reported as the share of the bound reached.

Per-step costs come from differences of whole ``generate`` calls with forced lengths
(``ignore_eos``), so prefill and per-request overhead cancel::

    t = (T(N+1 tokens) - T(1 token)) / N
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def decode_step_s(seconds_long: float, seconds_short: float, extra_steps: int) -> float:
    """Seconds per decode step: ``(T(N+1) - T(1)) / N`` for ``extra_steps = N``.

    Both calls must prefill the same prompts (same prefix-cache state), so the difference
    is the N extra decode steps alone.
    """
    if extra_steps < 1:
        raise ValueError(f"extra_steps must be >= 1, got {extra_steps}")
    return (seconds_long - seconds_short) / extra_steps


def verify_ratio(seconds_k: float, seconds_0: float, target_step_s: float, k: int) -> float:
    """``v_k = v(k) / t``: verification of k+1 tokens relative to one decode step.

    ``seconds_k`` and ``seconds_0`` time a one-token generation whose prompt is a cached
    prefix plus k+1 (resp. 1) new tokens; their difference is the marginal cost of the k
    extra query tokens, so ``v(k) = t + (seconds_k - seconds_0)``.
    """
    if target_step_s <= 0:
        raise ValueError(f"target_step_s must be > 0, got {target_step_s}")
    if k == 0:
        return 1.0
    return (target_step_s + seconds_k - seconds_0) / target_step_s


def cost_ratio(draft_step_s: float, target_step_s: float) -> float:
    """``c = t_draft / t_target`` from measured decode-step seconds."""
    if target_step_s <= 0:
        raise ValueError(f"target_step_s must be > 0, got {target_step_s}")
    return draft_step_s / target_step_s


def spec_bound(mean_acceptance_length: float, k: int, c: float, v_k: float) -> float:
    """Speed-up bound ``E / (k*c + v_k)`` (module docstring)."""
    denominator = k * c + v_k
    if denominator <= 0:
        raise ValueError(f"k*c + v_k must be > 0 (k={k}, c={c}, v_k={v_k})")
    return mean_acceptance_length / denominator


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max and count of repeated measurements."""
    if not values:
        raise ValueError("no values")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repetition ratios ``a_i / b_i`` of paired measurements (same repetition index)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"unpaired: {len(numerators)} vs {len(denominators)} repetitions")
    return [a / b for a, b in zip(numerators, denominators, strict=True)]
