"""Intervals and verdicts for paired comparisons, clustered by source document.

Items built from one article, law or dialogue are not independent: resampling items
understates the interval. :func:`cluster_bootstrap_ratio` resamples whole clusters (every
item carries one; an item without a source is its own cluster) with the same draws for both
arms, and returns the ratio of means with its percentile interval, n, the number of
clusters and the convention, so every cell of the report can say how it was computed.

:func:`verdict` turns a cell into words, never "higher": a gain or a loss only when the
interval excludes 1, "no effect detected at this scale" with the smallest effect this
interval could detect, "uninformative" at chance or for a zero-width interval, and "not
comparable" when the arms fail parity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# A statistic below this is treated as zero (e.g. sentence BLEU of an untrained model, about
# 1e-16, which would print as a 1e15x "gain").
ZERO_BASELINE = 1e-9
# |ratio - 1| detectable with 80% power by a two-sided 95% interval: (1.96 + 0.84) / 1.96.
POWER_FACTOR = 1.43
MMLU_CHANCE = 0.25
CONVENTION = "paired bootstrap over clusters (source documents), {n_boot} resamples, seed {seed}"


def _cluster_index(clusters: Sequence[Any] | None, n: int) -> tuple[list[int], int]:
    """Each item's cluster as 0..k-1 (first-seen order); no clusters: one per item."""
    if clusters is None:
        return list(range(n)), n
    if len(clusters) != n:
        raise ValueError(f"clusters: {len(clusters)} labels for {n} items")
    ids: dict[Any, int] = {}
    return [ids.setdefault(c, len(ids)) for c in clusters], len(ids)


def _resample_counts(n_clusters: int, n_boot: int, seed: int):
    """``(n_boot, n_clusters)`` draw counts: how often each cluster is in each resample."""
    import numpy as np

    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))
    rows = np.repeat(np.arange(n_boot), n_clusters)
    counts = np.zeros((n_boot, n_clusters))
    np.add.at(counts, (rows, draws.ravel()), 1)
    return counts


def _percentiles(values, ci: float) -> tuple[float, float]:
    """The central ``ci`` percentile interval (NaN, NaN when there are no values)."""
    import numpy as np

    if not len(values):
        return math.nan, math.nan
    tail = (1 - ci) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def cluster_bootstrap_ratio(
    before: Sequence[float],
    after: Sequence[float],
    clusters: Sequence[Any] | None = None,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    transform: str = "mean",
) -> dict[str, Any]:
    """Ratio after/before of a weighted mean, with a paired clustered bootstrap interval.

    Args:
        before: per-item values of the reference arm.
        after: per-item values of the compared arm, same items, same order.
        clusters: per-item source label (article, law, dialogue); None: items independent.
        weights: per-item weights (e.g. token counts); the statistic is sum(v)/sum(w).
        n_boot: resamples.
        seed: seed of the resampling.
        ci: coverage of the percentile interval.
        transform: ``"mean"``, or ``"exp_mean"`` (perplexity from NLL sums and token counts).

    Returns:
        ``{ratio, low, high, before, after, n, n_clusters, ci, convention}``; ratio and
        interval are NaN when the reference statistic is zero.
    """
    import numpy as np

    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if b.shape != a.shape or b.ndim != 1 or len(b) == 0:
        raise ValueError(f"before/after need the same non-zero length, got {b.shape} and {a.shape}")
    if transform not in ("mean", "exp_mean"):
        raise ValueError(f"transform {transform!r}: expected 'mean' or 'exp_mean'")
    w = np.ones_like(b) if weights is None else np.asarray(weights, dtype=float)
    idx, k = _cluster_index(clusters, len(b))
    sums = np.zeros((3, k))
    for row, v in enumerate((b, a, w)):
        np.add.at(sums[row], idx, v)
    counts = _resample_counts(k, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (counts @ sums[:2].T) / (counts @ sums[2])[:, None]
        if transform == "exp_mean":
            stat = np.exp(stat)
        ratios = stat[:, 1] / stat[:, 0]
    ratios = ratios[np.isfinite(ratios) & (np.abs(stat[:, 0]) > ZERO_BASELINE)]
    point = sums[:2].sum(1) / sums[2].sum()
    point = np.exp(point) if transform == "exp_mean" else point
    low, high = _percentiles(ratios, ci)
    ok = abs(point[0]) > ZERO_BASELINE
    return {
        "ratio": float(point[1] / point[0]) if ok else math.nan,
        "low": float(low) if ok else math.nan,
        "high": float(high) if ok else math.nan,
        "before": float(point[0]),
        "after": float(point[1]),
        "n": len(b),
        "n_clusters": k,
        "ci": ci,
        "convention": CONVENTION.format(n_boot=n_boot, seed=seed),
    }


def cluster_bootstrap_mean(
    values: Sequence[float],
    clusters: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Mean of per-item values with a clustered percentile interval ``{mean, low, high, n}``."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("cluster_bootstrap_mean: needs a non-empty 1-d sequence")
    idx, k = _cluster_index(clusters, len(v))
    sums, sizes = np.zeros(k), np.zeros(k)
    np.add.at(sums, idx, v)
    np.add.at(sizes, idx, 1)
    counts = _resample_counts(k, n_boot, seed)
    means = (counts @ sums) / (counts @ sizes)
    low, high = _percentiles(means, ci)
    return {"mean": float(v.mean()), "low": float(low), "high": float(high), "n": len(v)}


def min_detectable_ratio(low: float, high: float) -> float:
    """Smallest ratio (above 1) that an interval this wide detects with ~80% power.

    Half the interval's width, times (1.96 + 0.84) / 1.96, on either side of 1.
    """
    return 1 + POWER_FACTOR * (high - low) / 2


def at_chance(low: float, high: float, chance: float = MMLU_CHANCE) -> bool:
    """True when an accuracy interval includes the chance rate (an uninformative baseline)."""
    return low <= chance <= high


def degenerate(low: float, high: float) -> bool:
    """True for an interval of zero width (no resample changed) or a missing one."""
    return not (math.isfinite(low) and math.isfinite(high)) or high - low <= 1e-12


def verdict(
    cell: dict[str, Any],
    informative: bool = True,
    comparable: bool = True,
    lower_is_better: bool = False,
) -> str:
    """The words for a ratio cell ``{ratio, low, high}``.

    Args:
        cell: a :func:`cluster_bootstrap_ratio` result.
        informative: False when the baseline is at chance (e.g. MMLU accuracy whose interval
            includes 25%).
        comparable: False when the arms fail parity.
        lower_is_better: perplexity: a ratio below 1 is the gain.
    """
    if not comparable:
        return "not comparable (arms differ: see the parity table)"
    if not informative:
        return "uninformative (baseline at chance)"
    if not math.isfinite(cell["ratio"]):
        return "uninformative (baseline is 0)"
    low, high = cell["low"], cell["high"]
    if degenerate(low, high):
        return "uninformative (zero-width interval)"
    above, below = low > 1, high < 1
    if above or below:
        good = below if lower_is_better else above
        return f"{'gain' if good else 'loss'} (CI {'above' if above else 'below'} 1)"
    return (
        "no effect detected at this scale "
        f"(smallest detectable effect ~{min_detectable_ratio(low, high):.2f}x)"
    )
