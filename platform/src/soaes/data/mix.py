"""Mixing maths: token budgets per group, seeded sampling with repeats, splits and shards.

Pure numpy over per-document metadata (uid, group, tokens); the driver runs it once the
corpus has been cleaned, deduplicated and tokenised. Everything is keyed by seeded hashes
of document uids, so the result does not depend on the order Ray delivered the rows in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soaes.data.dedup import splitmix64


def seeded_key(uids: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """A uint64 sort/sampling key per uid, fixed by ``seed`` (and a per-use ``salt``)."""
    with np.errstate(over="ignore"):
        mixed = np.uint64(seed) * np.uint64(0xD1B54A32D192ED03) + np.uint64(salt)
    return splitmix64(np.asarray(uids, dtype=np.int64).view(np.uint64) ^ splitmix64(mixed))


def unit_interval(keys: np.ndarray) -> np.ndarray:
    """uint64 keys -> floats uniform in [0, 1)."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def group_budgets(
    available: dict[str, int], ratio: dict[str, float], total_tokens: int | None
) -> dict[str, int]:
    """Token budget per group for a target ratio.

    Args:
        available: tokens each group can supply without repeating a document.
        ratio: relative token weight per group.
        total_tokens: tokens wanted in all; None takes as much as the scarcest group allows
            (that group used exactly once, the others downsampled to the ratio).

    Returns:
        ``{group: budget}``; a budget above ``available`` means upsampling (repeats).
    """
    if total_tokens is None:
        # The scarcest group (fewest tokens per unit of weight) is used exactly once.
        scarce = min(ratio, key=lambda g: available[g] / ratio[g])
        return {
            g: available[g] if g == scarce else int(round(available[scarce] * w / ratio[scarce]))
            for g, w in ratio.items()
        }
    weight = sum(ratio.values())
    return {g: int(round(total_tokens * w / weight)) for g, w in ratio.items()}


def take_budget(tokens: np.ndarray, order: np.ndarray, budget: int) -> np.ndarray:
    """How many copies of each document make up ``budget`` tokens without exceeding it.

    Documents are walked in ``order`` (ascending): every full pass over the group adds one
    copy to every document (upsampling); the remainder takes the longest prefix of the order
    that fits, then fills what is left with later documents that still fit (first fit). The
    result misses the budget by less than the smallest document not taken.

    Args:
        tokens: tokens per document (EOS included), all > 0.
        order: sampling key per document (e.g. :func:`seeded_key`).
        budget: tokens wanted.

    Returns:
        int64 copies per document (aligned with ``tokens``).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    copies = np.zeros(tokens.size, dtype=np.int64)
    total = int(tokens.sum())
    if total == 0 or budget <= 0:
        return copies
    full, left = divmod(int(budget), total)
    copies += full
    idx = np.argsort(order, kind="stable")
    cum = np.cumsum(tokens[idx])
    k = int(np.searchsorted(cum, left, side="right"))
    copies[idx[:k]] += 1
    left -= int(cum[k - 1]) if k else 0
    rest = idx[k + 1 :]
    smallest = int(tokens[rest].min()) if rest.size else 0
    for j in rest.tolist():  # first fit; stops as soon as nothing can fit any more
        if left < smallest:
            break
        if tokens[j] <= left:
            copies[j] += 1
            left -= int(tokens[j])
    return copies


@dataclass(frozen=True)
class MixPlan:
    """The outcome of mixing: copies per document and the achieved token shares."""

    copies: np.ndarray
    budgets: dict[str, int]
    available: dict[str, int]
    achieved: dict[str, int]
    target_share: dict[str, float]
    achieved_share: dict[str, float]

    def max_relative_error(self) -> float:
        """Largest |achieved share / target share - 1| over groups."""
        return max(
            abs(self.achieved_share[g] / self.target_share[g] - 1) for g in self.target_share
        )


def plan_mix(
    groups: np.ndarray,
    tokens: np.ndarray,
    uids: np.ndarray,
    ratio: dict[str, float],
    total_tokens: int | None,
    seed: int,
) -> MixPlan:
    """Copies per document so that groups' tokens follow ``ratio`` (see :func:`take_budget`).

    Args:
        groups: group name per document.
        tokens: tokens per document, EOS included.
        uids: document uids (sampling order is a seeded hash of them).
        ratio: group -> relative token weight; groups not named get no tokens.
        total_tokens: tokens wanted in all (None: as many as the scarcest group allows).
        seed: sampling seed.
    """
    groups = np.asarray(groups)
    tokens = np.asarray(tokens, dtype=np.int64)
    order = seeded_key(uids, seed, salt=1)
    available = {g: int(tokens[groups == g].sum()) for g in ratio}
    empty = [g for g, n in available.items() if n == 0]
    if empty:
        raise ValueError(
            f"mix.ratio: group(s) {empty} have no tokens left after cleaning and dedup"
        )
    budgets = group_budgets(available, ratio, total_tokens)
    copies = np.zeros(tokens.size, dtype=np.int64)
    for g in ratio:
        sel = np.flatnonzero(groups == g)
        copies[sel] = take_budget(tokens[sel], order[sel], budgets[g])
    achieved = {g: int((copies * tokens)[groups == g].sum()) for g in ratio}
    weight, got = sum(ratio.values()), sum(achieved.values())
    return MixPlan(
        copies=copies,
        budgets=budgets,
        available=available,
        achieved=achieved,
        target_share={g: w / weight for g, w in ratio.items()},
        achieved_share={g: achieved[g] / got for g in ratio},
    )


def stream_shards(
    uids: np.ndarray, copies: np.ndarray, tokens: np.ndarray, seed: int, tokens_per_shard: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay the sampled copies out as one interleaved stream cut into shards.

    Every (document, copy) gets a seeded rank, so groups interleave in the packed output;
    shard ``s`` holds the copies whose stream offset falls in
    ``[s * tokens_per_shard, (s + 1) * tokens_per_shard)``.

    Returns:
        ``(uid, rank, shard)`` per copy, sorted by rank.
    """
    uid = np.repeat(np.asarray(uids, dtype=np.int64), copies)
    tok = np.repeat(np.asarray(tokens, dtype=np.int64), copies)
    starts = np.cumsum(copies) - copies
    copy_no = np.arange(uid.size, dtype=np.int64) - np.repeat(starts, copies)
    key = seeded_key(uid, seed, salt=2) ^ splitmix64(copy_no.astype(np.uint64))
    idx = np.argsort(key, kind="stable")
    offset = np.cumsum(tok[idx]) - tok[idx]
    return uid[idx], np.arange(idx.size, dtype=np.int64), offset // max(tokens_per_shard, 1)


def split_fraction(uids: np.ndarray, seed: int, fraction: float, salt: int = 3) -> np.ndarray:
    """Boolean mask of the documents held out: a seeded ``fraction`` of uids."""
    return unit_interval(seeded_key(uids, seed, salt)) < fraction
