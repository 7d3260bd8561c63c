"""Exact and near-duplicate detection: MinHash over character shingles, LSH banding, union-find.

The maths is pure numpy (unit-tested without Ray). :func:`candidate_pairs` is the Ray Data
step: every document emits one row per LSH band key (plus its exact content hash), a
shuffle groups equal keys across all sources and shards, and each group of two or more
documents becomes candidate pairs. Candidates are then verified on their signatures
(estimated Jaccard >= threshold; equal content hashes for exact duplicates) and merged with
union-find, keeping the earliest document of each cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soaes.data.tokenize import list_column

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_SHINGLE_BASE = np.uint64(0x100000001B3)
_CHUNK = 4096  # shingles per block of the (num_perm x shingles) product: bounds memory
EXACT_SALT = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser: a fast, well-mixed, deterministic uint64 -> uint64."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stable_hash64(text: str) -> int:
    """A process-independent signed 64-bit hash of a string (Python's hash() is salted)."""
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


def shingle_hashes(text: str, k: int) -> np.ndarray:
    """uint64 hashes of every ``k``-character shingle of ``text`` (one for shorter texts)."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if cps.size == 0:
        return np.zeros(1, dtype=np.uint64)
    if cps.size <= k:
        k = cps.size
    n = cps.size - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):  # polynomial rolling hash, wrapping mod 2**64
            h = h * _SHINGLE_BASE + cps[j : j + n]
    return splitmix64(h)  # duplicates do not change a minimum: no need to dedupe


def perm_params(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The (odd multiplier, offset) pairs of the ``num_perm`` multiply-shift hash functions."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def minhash(shingles: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature (uint32 per permutation) of a set of uint64 shingle hashes."""
    sig = np.full(a.size, np.iinfo(np.uint32).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(0, shingles.size, _CHUNK):
            x = shingles[i : i + _CHUNK]
            h = (a[:, None] * x[None, :] + b[:, None]) >> np.uint64(32)
            sig = np.minimum(sig, h.min(axis=1))
    return sig.astype(np.uint32)


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """One int64 key per LSH band: equal keys mean the band's rows are all equal."""
    rows = sig.reshape(bands, -1).astype(np.uint64)
    # Distinct odd multipliers per row position, then one mixing pass: an order-sensitive
    # combination of the band's values (collisions are re-checked on signatures anyway).
    mult = splitmix64(np.arange(1, rows.shape[1] + 1, dtype=np.uint64)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (rows * mult[None, :]).sum(axis=1, dtype=np.uint64)
    return splitmix64(h ^ (np.arange(bands, dtype=np.uint64) << np.uint64(56))).view(np.int64)


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Share of equal MinHash slots: an unbiased estimate of the Jaccard similarity."""
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def group_pairs(uids: np.ndarray, max_all_pairs: int = 16) -> np.ndarray:
    """Candidate pairs of one LSH bucket: all pairs when small, else a star around the first.

    A star keeps huge buckets (boilerplate) linear; union-find still merges the cluster.
    """
    u = np.unique(np.asarray(uids, dtype=np.int64))
    if u.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    if u.size <= max_all_pairs:
        i, j = np.triu_indices(u.size, k=1)
        return np.stack([u[i], u[j]], axis=1)
    return np.stack([np.full(u.size - 1, u[0]), u[1:]], axis=1)


class UnionFind:
    """Disjoint sets over hashable ids (path halving, union by order of preference)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        """Root of ``x``'s set (``x`` itself when unseen)."""
        p = self.parent
        p.setdefault(x, x)
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return x

    def union(self, a, b) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def resolve_clusters(
    pairs: Iterable[tuple[int, int]], priority: dict[int, tuple]
) -> dict[int, int]:
    """Map every duplicate to the document kept for its cluster.

    Args:
        pairs: verified duplicate pairs of document uids.
        priority: uid -> sort key; the smallest key of a cluster is kept (e.g. source order,
            then uid), so the choice is deterministic whatever order pairs arrive in.

    Returns:
        ``{removed uid: kept uid}`` for every document that is not its cluster's keeper.
    """
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    clusters: dict = {}
    for x in list(uf.parent):
        clusters.setdefault(uf.find(x), []).append(x)
    removed = {}
    for members in clusters.values():
        keep = min(members, key=lambda u: priority[u])
        removed.update({u: keep for u in members if u != keep})
    return removed


def explode_keys(batch: pa.Table, exact: bool, partitions: int) -> pa.Table:
    """Kept ``(uid, status, bands, content_hash)`` rows -> one ``(part, key, uid)`` row per LSH
    band (and per content hash when ``exact``); ``part`` spreads keys over ``partitions``."""
    batch = batch.filter(pc.equal(batch.column("status"), "ok"))
    uid = batch.column("uid").to_numpy()
    bands = list_column(batch.column("bands"))
    keys = [np.concatenate(bands) if bands else np.empty(0, np.int64)]
    uids = [np.repeat(uid, [len(b) for b in bands])]
    if exact:
        keys.append(
            (batch.column("content_hash").to_numpy().view(np.uint64) ^ EXACT_SALT).view(np.int64)
        )
        uids.append(uid)
    key = np.concatenate(keys).astype(np.int64)
    part = (key.view(np.uint64) % np.uint64(partitions)).astype(np.int64)
    return pa.table({"part": part, "key": key, "uid": np.concatenate(uids).astype(np.int64)})


def pairs_of_partition(table: pa.Table) -> pa.Table:
    """``map_groups`` body: candidate pairs of every bucket (equal key) in one partition.

    One call per partition, not per key: buckets are found by sorting, and only buckets of two
    or more documents (rare) reach Python.
    """
    key, uid = table.column("key").to_numpy(), table.column("uid").to_numpy()
    order = np.lexsort((uid, key))
    key, uid = key[order], uid[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, key.size])
    found = [
        group_pairs(uid[s : s + n])
        for s, n in zip(starts[sizes > 1], sizes[sizes > 1], strict=True)
    ]
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return pa.table({"a": pairs[:, 0], "b": pairs[:, 1]})


def candidate_pairs(ds, exact: bool, partitions: int) -> np.ndarray:
    """Run the LSH grouping on a Ray dataset of ``(uid, status, bands, content_hash)``.

    Returns:
        Unique candidate pairs ``(a, b)`` with ``a < b``, shape ``(n, 2)``.
    """
    import ray

    refs = (
        ds.map_batches(
            explode_keys,
            batch_format="pyarrow",
            fn_kwargs={"exact": exact, "partitions": partitions},
        )
        .groupby("part")
        .map_groups(pairs_of_partition, batch_format="pyarrow")
        .to_arrow_refs()
    )
    tables = [t for t in ray.get(refs) if t.num_rows]
    if not tables:
        return np.empty((0, 2), dtype=np.int64)
    t = pa.concat_tables(tables)
    return np.unique(np.stack([t.column("a").to_numpy(), t.column("b").to_numpy()], axis=1), axis=0)
