"""Clustered bootstrap and verdicts (pure)."""

from __future__ import annotations

import math
import random

import pytest

from soaes.eval.stats import (
    cluster_bootstrap_mean,
    cluster_bootstrap_ratio,
    min_detectable_ratio,
    verdict,
)


def test_cluster_interval_wider_than_item_interval_when_clusters_are_correlated():
    # 8 source documents, 6 items each; every item of a document has the document's value,
    # so a document is one observation, not six.
    before = [1.0] * 48
    after = [v for d in range(8) for v in [0.6 + 0.1 * d] * 6]
    clusters = [d for d in range(8) for _ in range(6)]
    items = cluster_bootstrap_ratio(before, after, None, n_boot=2000)
    clus = cluster_bootstrap_ratio(before, after, clusters, n_boot=2000)
    assert items["n_clusters"] == 48 and clus["n_clusters"] == 8 and clus["n"] == 48
    assert clus["ratio"] == pytest.approx(items["ratio"]) == pytest.approx(0.95)
    assert (clus["high"] - clus["low"]) > 1.8 * (items["high"] - items["low"])
    assert clus["low"] < 0.95 < clus["high"] and "clusters" in clus["convention"]
    # seeded: same inputs, same interval
    assert cluster_bootstrap_ratio(before, after, clusters, n_boot=2000) == clus


def test_exp_mean_perplexity_ratio_and_zero_baseline():
    r = cluster_bootstrap_ratio([20.0] * 4, [10.0] * 4, weights=[10] * 4, transform="exp_mean")
    assert r["ratio"] == pytest.approx(math.exp(-1))
    z = cluster_bootstrap_ratio([0.0, 0.0], [1.0, 2.0])
    assert math.isnan(z["ratio"]) and verdict(z).startswith("uninformative")


def test_verdicts():
    gain = {"ratio": 1.2, "low": 1.05, "high": 1.3}
    loss = {"ratio": 0.8, "low": 0.7, "high": 0.9}
    wide = {"ratio": 1.05, "low": 0.9, "high": 1.2}
    assert verdict(gain) == "gain (CI above 1)"
    assert verdict(loss) == "loss (CI below 1)"
    assert verdict(loss, lower_is_better=True) == "gain (CI below 1)"  # perplexity down
    mde = min_detectable_ratio(0.9, 1.2)
    assert mde == pytest.approx(1 + 1.43 * 0.15)
    assert (
        verdict(wide)
        == f"no effect detected at this scale (smallest detectable effect ~{mde:.2f}x)"
    )
    assert verdict(gain, informative=False) == "uninformative (baseline at chance)"
    assert verdict(gain, comparable=False).startswith("not comparable")
    flat = {"ratio": 1.0, "low": 1.0, "high": 1.0}  # no item changed
    assert verdict(flat) == "uninformative (zero-width interval)"
    for d in (gain, loss, wide, flat):
        assert "higher" not in verdict(d)


def test_mean_interval_at_chance():
    # 57 MMLU items, 14 correct: 24.6%, its interval holds 25%.
    m = cluster_bootstrap_mean([1] * 14 + [0] * 43)
    assert m["low"] < 0.25 < m["high"] and m["n"] == 57


def test_item_bootstrap_contains_the_point_and_is_seeded():
    rng = random.Random(1)
    before = [float(rng.random() < 0.5) for _ in range(200)]
    after = [b if rng.random() < 0.9 else 1 - b for b in before]
    r = cluster_bootstrap_ratio(before, after, n_boot=500, seed=3)
    assert r["low"] <= r["ratio"] <= r["high"] and r["n"] == r["n_clusters"] == 200
    assert r["ratio"] == pytest.approx(sum(after) / sum(before))


def test_ratio_over_a_near_zero_baseline_is_undefined_not_a_huge_gain():
    before = [1e-17, 2e-17, 0.0, 1e-16]  # sentence BLEU of an untrained model
    r = cluster_bootstrap_ratio(before, [0.5, 0.0, 0.2, 0.1], n_boot=200)
    assert math.isnan(r["ratio"]) and r["after"] == pytest.approx(0.2)
