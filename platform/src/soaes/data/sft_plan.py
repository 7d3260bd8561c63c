"""The SFT plan: dedup, caps, splits by source document, test decontamination, weights.

Pure numpy over per-example metadata. Splitting hashes each example's *group key* (its
source document: a law article, an insurance answer, a conversation), so every example of
a document lands in the same split. A test example whose question or answer text (after
normalisation) occurs as any turn of a train example of any stage is dropped from test
(``filtered.test_overlap``): the domain eval never asks what training showed. Documents
reserved for the eval sets (``test_groups``) go to test whatever their hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soaes.data.dedup import splitmix64
from soaes.data.mix import seeded_key, unit_interval
from soaes.data.plan import initial_outcomes

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SFTPlan:
    """Outcome, split and train copies per example, plus shard entries."""

    outcome: np.ndarray
    split: np.ndarray
    copies: np.ndarray
    entry_uid: np.ndarray
    entry_rank: np.ndarray
    entry_out: np.ndarray
    out_names: list[str]


def exact_duplicates(
    uid: np.ndarray, scope: np.ndarray, content_hash: np.ndarray, ok: np.ndarray
) -> np.ndarray:
    """Mask of examples whose content repeats an earlier (smaller uid) one in the same scope."""
    dup = np.zeros(uid.size, dtype=bool)
    idx = np.flatnonzero(ok)
    seen: set = set()
    for i in idx[np.argsort(uid[idx], kind="stable")]:
        key = (scope[i], int(content_hash[i]))
        dup[i] = key in seen
        seen.add(key)
    return dup


def over_cap(
    ok: np.ndarray, group_hash: np.ndarray, uid: np.ndarray, cap: int, seed: int
) -> np.ndarray:
    """Mask of ``ok`` examples beyond the first ``cap`` in seeded source-document order."""
    idx = np.flatnonzero(ok)
    order = np.lexsort((uid[idx], seeded_key(group_hash[idx], seed, salt=4)))
    mask = np.zeros(ok.size, dtype=bool)
    mask[idx[order[cap:]]] = True
    return mask


def assign_splits(
    group_hash: np.ndarray, seed: int, validation_fraction: float, test_fraction: float
) -> np.ndarray:
    """``train``/``validation``/``test`` per example from its source document's seeded hash."""
    u = unit_interval(seeded_key(group_hash, seed, salt=5))
    return np.where(
        u < test_fraction,
        "test",
        np.where(u < test_fraction + validation_fraction, "validation", "train"),
    ).astype(object)


def train_turn_keys(
    split: np.ndarray, alive: np.ndarray, turn_hashes: list[np.ndarray]
) -> np.ndarray:
    """Sorted unique leak keys of every turn of a live train example."""
    train = np.flatnonzero(alive & (split == "train"))
    return (
        np.unique(np.concatenate([turn_hashes[i] for i in train]))
        if train.size
        else np.empty(0, np.int64)
    )


def test_overlaps(
    split: np.ndarray,
    alive: np.ndarray,
    q_hash: np.ndarray,
    a_hash: np.ndarray,
    turn_hashes: list[np.ndarray],
) -> np.ndarray:
    """Mask of live test examples whose question or answer is any turn of a live train example."""
    seen = train_turn_keys(split, alive, turn_hashes)
    test = alive & (split == "test")
    return test & (np.isin(q_hash, seen) | np.isin(a_hash, seen))


def weight_copies(uid: np.ndarray, weight: float, seed: int) -> np.ndarray:
    """Copies per example for a weight: ``floor(w)`` each, plus one for a seeded ``frac(w)``."""
    whole, frac = int(np.floor(weight)), weight - np.floor(weight)
    return whole + (unit_interval(seeded_key(uid, seed, salt=6)) < frac).astype(np.int64)


def plan_sft(
    meta: dict,
    stages: list[dict],
    seed: int,
    validation_fraction: float,
    test_fraction: float,
    rows_per_shard: int,
    test_groups: np.ndarray | None = None,
) -> SFTPlan:
    """Decide every example's fate (see the module docstring).

    Args:
        meta: per example ``uid, stage, source, group_hash, status, reason, content_hash,
            q_hash, a_hash, turn_hashes``.
        stages: ``[{name, sources: [{label, weight, max_examples}]}]`` in curriculum order.
        test_groups: group hashes of source documents reserved for evaluation: all their
            examples go to the test split.
    """
    uid, stage, source = meta["uid"], meta["stage"], meta["source"]
    outcome = initial_outcomes(meta["status"], meta["reason"])
    ok = outcome == "out"
    dup = exact_duplicates(uid, stage, meta["content_hash"], ok)
    outcome[dup] = "exact_dup"
    for st in stages:
        for src in st["sources"]:
            if src["max_examples"]:
                mine = (outcome == "out") & (stage == st["name"]) & (source == src["label"])
                outcome[over_cap(mine, meta["group_hash"], uid, src["max_examples"], seed)] = (
                    "filtered:over_max_examples"
                )
    split = assign_splits(meta["group_hash"], seed, validation_fraction, test_fraction)
    if test_groups is not None and test_groups.size:
        split[np.isin(meta["group_hash"], test_groups)] = "test"
    alive = outcome == "out"
    outcome[test_overlaps(split, alive, meta["q_hash"], meta["a_hash"], meta["turn_hashes"])] = (
        "filtered:test_overlap"
    )
    copies = (outcome == "out").astype(np.int64)
    for st in stages:
        for src in st["sources"]:
            mine = (
                (outcome == "out")
                & (stage == st["name"])
                & (source == src["label"])
                & (split == "train")
            )
            copies[mine] = weight_copies(uid[mine], src["weight"], seed)
    outcome[(outcome == "out") & (copies == 0)] = "filtered:weight_downsampled"
    split[outcome != "out"] = ""
    return _with_entries(
        outcome, split, copies, uid, stage, [s["name"] for s in stages], seed, rows_per_shard
    )


def _with_entries(outcome, split, copies, uid, stage, stage_names, seed, rows_per_shard) -> SFTPlan:
    names: list[str] = []
    parts = []
    for st in stage_names:
        for sp in SPLITS:
            sel = (stage == st) & (split == sp) & (copies > 0)
            e_uid = np.repeat(uid[sel], copies[sel])
            starts = np.cumsum(copies[sel]) - copies[sel]
            copy_no = np.arange(e_uid.size) - np.repeat(starts, copies[sel])
            key = seeded_key(e_uid, seed, salt=7) ^ splitmix64(copy_no.astype(np.uint64))
            rank = np.empty(e_uid.size, dtype=np.int64)
            rank[np.argsort(key, kind="stable")] = np.arange(e_uid.size)
            shard = rank // rows_per_shard
            base = len(names)
            names.extend(
                f"{st}/{sp}/part-{s:05d}" for s in range(int(shard.max()) + 1 if shard.size else 0)
            )
            parts.append((e_uid, rank, (shard + base).astype(np.int32)))
    e_uid, rank, out = (
        np.concatenate(x) if x else np.empty(0, np.int64) for x in zip(*parts, strict=True)
    )
    order = np.argsort(e_uid, kind="stable")
    return SFTPlan(
        outcome=outcome,
        split=split,
        copies=copies,
        entry_uid=e_uid[order],
        entry_rank=rank[order],
        entry_out=out[order],
        out_names=names,
    )
