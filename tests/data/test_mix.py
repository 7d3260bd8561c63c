"""Mixing maths: budgets, exact shares, repeats, determinism (pure, no Ray)."""

from __future__ import annotations

import numpy as np

from soaes.data.mix import group_budgets, plan_mix, split_fraction, stream_shards, take_budget


def _corpus(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.array(["domain"] * 300 + ["general"] * 900)
    tokens = rng.integers(20, 400, size=groups.size)
    uids = rng.integers(-(2**62), 2**62, size=groups.size)
    return groups, tokens, uids


def test_budgets_follow_ratio_and_scarcest_group():
    assert group_budgets({"d": 100, "g": 1000}, {"d": 1, "g": 1}, None) == {"d": 100, "g": 100}
    assert group_budgets({"d": 100, "g": 1000}, {"d": 1, "g": 3}, None) == {"d": 100, "g": 300}
    assert group_budgets({"d": 100, "g": 1000}, {"d": 1, "g": 1}, 500) == {"d": 250, "g": 250}


def test_take_budget_never_exceeds_and_upsamples_whole_passes():
    tokens = np.array([50, 30, 70, 10, 40])
    order = np.arange(5)
    copies = take_budget(tokens, order, 95)
    assert (copies * tokens).sum() <= 95 and (copies * tokens).sum() >= 95 - tokens.min()
    up = take_budget(tokens, order, 2 * tokens.sum() + 60)
    assert (up >= 2).all() and (up * tokens).sum() == 2 * tokens.sum() + 60


def test_plan_mix_hits_the_ratio_within_a_fraction_of_a_percent():
    groups, tokens, uids = _corpus()
    for ratio in ({"domain": 1, "general": 1}, {"domain": 1, "general": 2}):
        plan = plan_mix(groups, tokens, uids, ratio, None, seed=1)
        assert plan.max_relative_error() < 0.005
        # The scarce group is used exactly once; the other is downsampled.
        assert (plan.copies[groups == "domain"] == 1).all()
        assert (plan.copies[groups == "general"] <= 1).all()
    up = plan_mix(
        groups,
        tokens,
        uids,
        {"domain": 3, "general": 1},
        total_tokens=4 * tokens[groups == "general"].sum(),
        seed=1,
    )
    assert up.copies[groups == "domain"].max() >= 3 and up.max_relative_error() < 0.005


def test_plan_is_deterministic_and_seeded():
    groups, tokens, uids = _corpus()
    a = plan_mix(groups, tokens, uids, {"domain": 1, "general": 1}, None, seed=1).copies
    b = plan_mix(groups, tokens, uids, {"domain": 1, "general": 1}, None, seed=1).copies
    c = plan_mix(groups, tokens, uids, {"domain": 1, "general": 1}, None, seed=2).copies
    assert (a == b).all() and (a != c).any()


def test_stream_shards_interleave_and_cut_by_tokens():
    groups, tokens, uids = _corpus()
    copies = np.ones(uids.size, dtype=np.int64)
    copies[:10] = 3
    uid, rank, shard = stream_shards(uids, copies, tokens, seed=0, tokens_per_shard=5000)
    assert uid.size == copies.sum() and (rank == np.arange(uid.size)).all()
    assert (np.diff(shard) >= 0).all() and shard.max() >= 10
    first = set(uid[: uid.size // 4].tolist())
    assert first & set(uids[groups == "domain"].tolist()) and first & set(
        uids[groups == "general"].tolist()
    )


def test_split_fraction_is_about_the_fraction():
    uids = np.arange(20000)
    share = split_fraction(uids, seed=0, fraction=0.1).mean()
    assert 0.09 < share < 0.11
