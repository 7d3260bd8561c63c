"""The CPT corpus plan: from per-document metadata to outcomes and output-shard entries.

Pure numpy (no Ray): given each document's status, duplicate verdict, group and token count,
decide validation hold-out, mixing copies, and which shard each copy is packed into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soaes.data.mix import (
    MixPlan,
    plan_mix,
    seeded_key,
    split_fraction,
    stream_shards,
    unit_interval,
)


@dataclass(frozen=True)
class CorpusPlan:
    """Outcome per document plus the shard entries (one per packed copy)."""

    outcome: np.ndarray  # per document: out / quarantined:<r> / filtered:<r> / exact_dup / near_dup
    copies: np.ndarray  # per document: copies in train
    validation: np.ndarray  # per document: held out for validation
    mix: MixPlan
    entry_uid: np.ndarray  # per entry, sorted by uid
    entry_rank: np.ndarray
    entry_out: np.ndarray  # index into out_names
    out_names: list[str]


def initial_outcomes(status: np.ndarray, reason: np.ndarray) -> np.ndarray:
    """``ok`` -> ``out`` (provisional), ``duplicate`` -> ``exact_dup``, else ``<status>:<reason>``."""
    outcome = np.char.add(np.char.add(status.astype(str), ":"), reason.astype(str)).astype(object)
    outcome[status == "ok"] = "out"
    outcome[status == "duplicate"] = "exact_dup"
    return outcome


def ensure_each_group(
    held: np.ndarray, alive: np.ndarray, groups: np.ndarray, uids: np.ndarray, seed: int
) -> np.ndarray:
    """Hold out at least one document per group that has two or more, so every group gets a
    validation folder even in tiny corpora."""
    held = held.copy()
    for g in np.unique(groups[alive]):
        members = np.flatnonzero(alive & (groups == g))
        if members.size >= 2 and not held[members].any():
            held[members[np.argmin(unit_interval(seeded_key(uids[members], seed, 3)))]] = True
    return held


def plan_corpus(
    meta: dict[str, np.ndarray],
    dup_kind: dict[int, str],
    ratio: dict[str, float],
    total_tokens: int | None,
    seed: int,
    validation_fraction: float,
    tokens_per_shard: int,
) -> CorpusPlan:
    """Decide every document's fate.

    Args:
        meta: per document ``uid, group, status, reason, n_tokens``.
        dup_kind: ``{uid: "exact_dup" | "near_dup"}`` of removed duplicates.
        ratio, total_tokens, seed: the mix config.
        validation_fraction: share of kept documents held out per group.
        tokens_per_shard: tokens per train shard (rows_per_shard * seq_len).
    """
    uid, groups = meta["uid"], meta["group"]
    outcome = initial_outcomes(meta["status"], meta["reason"])
    if dup_kind:
        dup_uids = np.fromiter(dup_kind, dtype=np.int64, count=len(dup_kind))
        is_dup = np.isin(uid, dup_uids)
        outcome[is_dup] = [dup_kind[int(u)] for u in uid[is_dup]]
    alive = outcome == "out"
    val = (
        alive & split_fraction(uid, seed, validation_fraction)
        if validation_fraction
        else np.zeros_like(alive)
    )
    if validation_fraction:
        val = ensure_each_group(val, alive, groups, uid, seed)
    pool = alive & ~val
    tokens = meta["n_tokens"].astype(np.int64) + 1  # + EOS
    mix = plan_mix(groups[pool], tokens[pool], uid[pool], ratio, total_tokens, seed)
    copies = np.zeros(uid.size, dtype=np.int64)
    copies[pool] = mix.copies
    outcome[pool & (copies == 0)] = "filtered:mix_downsampled"
    names: list[str] = []
    parts = [_entries(uid, copies, tokens, seed, tokens_per_shard, "train", names)]
    for g in ratio:
        sel = val & (groups == g)
        parts.append(
            _entries(
                uid, sel.astype(np.int64), tokens, seed, tokens_per_shard, f"validation/{g}", names
            )
        )
    e_uid, e_rank, e_out = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.argsort(e_uid, kind="stable")
    return CorpusPlan(
        outcome=outcome,
        copies=copies,
        validation=val,
        mix=mix,
        entry_uid=e_uid[order],
        entry_rank=e_rank[order],
        entry_out=e_out[order],
        out_names=names,
    )


def _entries(uid, copies, tokens, seed, tokens_per_shard, prefix, names):
    sel = copies > 0
    s_uid, rank, shard = stream_shards(uid[sel], copies[sel], tokens[sel], seed, tokens_per_shard)
    base = len(names)
    names.extend(f"{prefix}/part-{s:05d}" for s in range(int(shard.max()) + 1 if shard.size else 0))
    return s_uid, rank, (shard + base).astype(np.int32)
