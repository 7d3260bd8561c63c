"""Ray Data input of the training workers: deterministic, resumable micro-batches.

Why not ``streaming_split``: it hands blocks to whichever worker asks first, so the rows a
rank sees change between attempts and "skip the batches already trained on" would repeat
or lose data after a restart. Instead every worker streams the *same* ordered dataset
(``DataConfig(datasets_to_split=[])`` + ``preserve_order``) in global batches of
``micro_batch_size x world_size`` rows and keeps its own slice. The global micro-batch index
is then the exact data position: resuming at optimizer step ``s`` skips
``s x grad_accum_steps`` global batches. Each rank reads all token ids, which costs
kilobytes per step next to the model's compute (at 72B scale a step reads ~MBs and computes
for seconds). Small train sets are materialized once by the driver (``materialize_max_mb``)
so workers start without read tasks of their own; large ones stream.

Driver side: :func:`parquet_dataset`, :func:`count_rows`, :func:`ordered_data_config`.
Worker side: :func:`iter_micro_batches` (+ :func:`start_early`), :func:`rows_to_micro_batches`
for held-out sets read on the driver by :func:`read_rows`, :func:`collate_cpt`, :func:`collate_sft`. A distillation loop uses the same functions with its own collate.
"""

from __future__ import annotations

import glob
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

IGNORE_INDEX = -100
Collate = Callable[[dict[str, np.ndarray]], dict[str, Any]]


def parquet_files(path: str) -> list[str]:
    """Sorted ``*.parquet`` files of a local folder (a fixed order makes runs repeatable)."""
    files = sorted(glob.glob(os.path.join(path, "*.parquet")))
    if not files:
        raise FileNotFoundError(f"{path}: no *.parquet files (run the data pipeline first)")
    return files


def parquet_dataset(
    paths: list[str], columns: list[str] | None = None, materialize_max_mb: float = 0
):
    """A Ray Dataset over the parquet files of local folders, in file order.

    Args:
        paths: folders of ``*.parquet`` files (read in sorted order).
        columns: columns to keep (None: all).
        materialize_max_mb: when the files total at most this many MB, read them once here
            into the object store: workers then iterate blocks without starting read tasks of
            their own (on a 2-core machine those tasks compete with model loading and cost
            ~10-20 s before the first step). Larger sets stream. 0: always stream.
    """
    import ray.data

    files = [f for p in paths for f in parquet_files(p)]
    if materialize_max_mb and sum(os.path.getsize(f) for f in files) <= materialize_max_mb * 2**20:
        # Read here with pyarrow, in file order, straight into the object store: a Ray Data
        # read would start task workers first (10-15 s on 2 cores, before any training).
        import pyarrow as pa
        import pyarrow.parquet as pq

        ds = ray.data.from_arrow(
            pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
        )
    else:
        ds = ray.data.read_parquet(files)
        if columns:
            ds = ds.select_columns(columns)
    ds.context.execution_options.preserve_order = True  # file order, also when materialized
    # One progress bar per worker per epoch is noise next to the training progress lines.
    ds.context.enable_progress_bars = False
    return ds


def count_rows(paths: list[str]) -> int:
    """Rows in the parquet files of these folders, from the footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for p in paths for f in parquet_files(p))


def ordered_data_config():
    """``DataConfig`` that gives every worker the full dataset in a fixed order (see module doc)."""
    from ray.data import ExecutionOptions
    from ray.train import DataConfig

    return DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True))


def data_position(micro_index: int, micro_per_epoch: int) -> tuple[int, int]:
    """``(epoch, global batches to skip in it)`` for a global micro-batch index."""
    if micro_per_epoch < 1:
        raise ValueError("an epoch must hold at least one global micro-batch")
    return divmod(micro_index, micro_per_epoch)


def _stack(col: np.ndarray) -> np.ndarray:
    """A list<int> column as a 2-D array (Ray gives an object array of arrays)."""
    if col.dtype == object:
        return np.stack([np.asarray(x, dtype=np.int64) for x in col])
    return col.astype(np.int64)


def iter_micro_batches(
    shard: Any,
    rank: int,
    world: int,
    micro_batch_size: int,
    skip: int,
    collate: Collate,
    shuffle_buffer_rows: int = 0,
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield this rank's micro-batches of one epoch, skipping ``skip`` global batches first.

    Args:
        shard: ``ray.train.get_dataset_shard(name)`` (the full ordered dataset, see module doc).
        rank: this worker's world rank; world: number of workers.
        micro_batch_size: rows per rank per micro-step.
        skip: global micro-batches of this epoch already trained on (resume).
        collate: rows (dict of numpy columns) -> model inputs.
        shuffle_buffer_rows: seeded local shuffle window (0: keep the data order).
        seed: shuffle seed; pass ``base_seed + epoch`` for a new order every epoch.
    """
    global_rows = micro_batch_size * world
    kwargs: dict[str, Any] = {}
    if shuffle_buffer_rows:
        kwargs = {"local_shuffle_buffer_size": shuffle_buffer_rows, "local_shuffle_seed": seed}
    batches = shard.iter_batches(
        batch_size=global_rows, batch_format="numpy", drop_last=True, prefetch_batches=2, **kwargs
    )
    lo, hi = rank * micro_batch_size, (rank + 1) * micro_batch_size
    for i, rows in enumerate(batches):
        if i < skip:
            continue
        yield collate({k: v[lo:hi] for k, v in rows.items()})


def start_early(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pull the first batch in a background thread and return an iterator that starts with it.

    Starting a Ray Data execution takes seconds (tasks, file listing); doing it while the
    model and the DeepSpeed engine are built takes it off the time to the first step.
    """
    box: dict[str, Any] = {}

    def pull() -> None:
        try:
            box["first"] = next(batches)
        except StopIteration:
            box["empty"] = True
        except BaseException as e:  # re-raised in the consumer
            box["error"] = e

    thread = threading.Thread(target=pull, name="soaes-data-start", daemon=True)
    thread.start()

    def chained() -> Iterator[dict[str, Any]]:
        thread.join()
        if "error" in box:
            raise box["error"]
        if "empty" in box:
            return
        yield box["first"]
        yield from batches

    return chained()


def read_rows(paths: list[str], max_rows: int, columns: list[str]) -> dict[str, list]:
    """The first ``max_rows`` rows of parquet folders, in file order, as lists (driver side).

    Held-out sets are small and evaluated many times: the driver reads them once with
    pyarrow and ships them in the worker plan instead of starting a Ray Data execution per
    set on every worker.
    """
    import pyarrow.parquet as pq

    out: dict[str, list] = {c: [] for c in columns}
    for f in (f for p in paths for f in parquet_files(p)):
        table = pq.read_table(f, columns=columns).slice(0, max_rows - len(out[columns[0]]))
        for c in columns:
            out[c].extend(table.column(c).to_pylist())
        if len(out[columns[0]]) >= max_rows:
            break
    return out


def rows_to_micro_batches(
    rows: dict[str, list], rank: int, world: int, micro_batch_size: int, collate: Collate
) -> list[dict[str, Any]]:
    """This rank's micro-batches of in-memory rows, cut like :func:`iter_micro_batches`
    (global batches of ``micro_batch_size x world``, incomplete last one dropped)."""
    n = len(next(iter(rows.values()))) if rows else 0
    step = micro_batch_size * world
    out = []
    for start in range(0, n - step + 1, step):
        lo = start + rank * micro_batch_size
        out.append(collate({k: _column(v[lo : lo + micro_batch_size]) for k, v in rows.items()}))
    return out


def _column(values: list) -> np.ndarray:
    """A 1-D numpy column like Ray's (object array of lists for list columns)."""
    col = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        col[i] = v
    return col


def collate_cpt(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Packed CPT blocks -> ``input_ids``, ``position_ids``, ``labels`` (trailing pads -100)."""
    import torch

    ids = torch.from_numpy(_stack(rows["input_ids"]))
    labels = ids.clone()
    seq_len = ids.shape[1]
    for i, n_pad in enumerate(np.asarray(rows["n_pad"], dtype=np.int64)):
        if n_pad:
            labels[i, seq_len - int(n_pad) :] = IGNORE_INDEX
    out = {"input_ids": ids, "labels": labels}
    if "position_ids" in rows:
        out["position_ids"] = torch.from_numpy(_stack(rows["position_ids"]))
    return out


def collate_sft(
    rows: dict[str, np.ndarray], pad_id: int, pad_to_multiple: int = 8
) -> dict[str, Any]:
    """Variable-length SFT examples -> right-padded ``input_ids``, ``attention_mask`` and
    ``labels`` (-100 on padding; the data already has -100 on non-assistant tokens)."""
    import torch

    seqs = [np.asarray(x, dtype=np.int64) for x in rows["input_ids"]]
    labs = [np.asarray(x, dtype=np.int64) for x in rows["labels"]]
    width = max(len(s) for s in seqs)
    width = -(-width // pad_to_multiple) * pad_to_multiple
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    labels = np.full((len(seqs), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, (s, lab) in enumerate(zip(seqs, labs, strict=True)):
        if len(s) != len(lab):
            raise ValueError(
                f"example {i}: input_ids ({len(s)}) and labels ({len(lab)}) differ in length"
            )
        ids[i, : len(s)], labels[i, : len(s)], mask[i, : len(s)] = s, lab, 1
    return {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
    }


def token_counts(batch: dict[str, Any]) -> Any:
    """``[tokens with a loss, input tokens that are not padding]`` of a collated batch, as an
    int64 CPU tensor: counting never converts to Python (no host sync), so the loop can add
    the counts up between logging steps. A loss token is a label != -100 after the shift
    (HF's causal-LM loss scores ``labels[:, 1:]``)."""
    import torch

    labels = batch["labels"]
    trained = (labels[:, 1:] != IGNORE_INDEX).sum()
    if "attention_mask" in batch:
        return torch.stack((trained, batch["attention_mask"].sum()))
    # CPT: only trailing pads carry -100, so the input tokens are the labelled ones.
    return torch.stack((trained, (labels != IGNORE_INDEX).sum()))


def batch_fingerprint(batch: dict[str, Any]) -> str:
    """Short content hash of a micro-batch's input ids (resume tests compare these)."""
    return hashlib.sha1(batch["input_ids"].numpy().tobytes()).hexdigest()[:12]
