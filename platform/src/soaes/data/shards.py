"""Writing output shards from Ray Data groups: deterministic names, atomic writes, checksums.

Each output file is one group of a ``groupby("out").map_groups(...)``: the group's rows
are ordered by ``rank`` and written to ``<output_dir>/<out>.parquet`` by the worker that
holds them, which returns one stats row (file, rows, tokens, sha256). A retried task
rewrites the same file, so the write is idempotent.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soaes.data.pack import pack_documents
from soaes.data.tokenize import list_array, list_column

PACKED_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("n_pad", pa.int32()),
    ]
)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_table(table: pa.Table, path: Path) -> dict:
    """Write ``table`` to ``path`` atomically; returns ``{file, rows, bytes, sha256}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return {"rows": table.num_rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def stats_table(out: str, stats: dict) -> pa.Table:
    """One stats row as a table (``map_groups`` must return a batch)."""
    return pa.table({"out": [out], **{k: [v] for k, v in stats.items()}})


def attach_entries(
    batch: pa.Table,
    uid: np.ndarray,
    rank: np.ndarray,
    out: np.ndarray,
    names: list[str],
    columns: list[str],
) -> pa.Table:
    """``map_batches``: one row per planned entry (copy) of each row, tagged with its shard.

    Args:
        batch: rows with a ``uid`` column and the ``columns`` to carry.
        uid, rank, out: the plan's entries sorted by uid (a uid may have several copies);
            ``out`` indexes ``names`` (the shard paths). Rows without entries are dropped.
    """
    ids = batch.column("uid").to_numpy()
    lo, hi = np.searchsorted(uid, ids, "left"), np.searchsorted(uid, ids, "right")
    n = hi - lo
    rows = np.repeat(np.arange(ids.size), n)
    entry = np.repeat(lo, n) + (np.arange(rows.size) - np.repeat(np.cumsum(n) - n, n))
    take = pa.array(rows, pa.int64())
    return pa.table(
        {
            "out": pa.array([names[i] for i in out[entry]], pa.string()),
            "rank": pa.array(rank[entry], pa.int64()),
            **{c: batch.column(c).take(take) for c in columns},
        }
    )


def ordered(group: pa.Table) -> pa.Table:
    """A group's rows in stream order."""
    return group.take(np.argsort(group.column("rank").to_numpy(), kind="stable"))


def pack_group(
    group: pa.Table,
    output_dir: str,
    seq_len: int,
    eos_id: int,
    pad_id: int,
    reset_position_ids: bool,
) -> pa.Table:
    """``map_groups`` body: pack one shard's documents and write ``<out>.parquet``."""
    group = ordered(group)
    out = group.column("out")[0].as_py()
    docs = list_column(group.column("input_ids"))
    ids, pos, n_pad = pack_documents(docs, seq_len, eos_id, pad_id, reset_position_ids)
    table = pa.table(
        {
            "input_ids": list_array(list(ids)),
            "position_ids": list_array(list(pos)),
            "n_pad": pa.array(n_pad, pa.int32()),
        },
        schema=PACKED_SCHEMA,
    )
    stats = write_table(table, Path(output_dir) / f"{out}.parquet")
    stats.update(docs=len(docs), tokens=int(sum(len(d) + 1 for d in docs)), pad=int(n_pad.sum()))
    return stats_table(out, stats)
