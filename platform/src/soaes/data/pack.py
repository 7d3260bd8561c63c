"""Packing tokenised documents into fixed ``seq_len`` blocks, and the exact inverse.

Layout of one shard (a list of documents packed in order)::

    doc0 EOS doc1 EOS doc2 ... docN EOS PAD ... PAD

cut into rows of ``seq_len`` tokens; a document may continue into the next row. Only the
last row of a shard has padding (``n_pad`` trailing pad tokens). Position ids restart at 0
at the start of every row and after every EOS (each document, and the pad tail, is its own
segment, as in Megatron's ``reset_position_ids``); without reset they are ``0..seq_len-1``.
Unpacking (drop the pad tail, concatenate, split after each EOS) gives back every document
in order: packing is lossless.
"""

from __future__ import annotations

import numpy as np


def pack_documents(
    docs: list[np.ndarray], seq_len: int, eos_id: int, pad_id: int, reset_position_ids: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack documents (token id arrays without EOS) into ``seq_len`` rows.

    Args:
        docs: token ids per document, in stream order; must not contain ``eos_id``.
        seq_len: tokens per row.
        eos_id: appended after every document.
        pad_id: fills the tail of the last row.
        reset_position_ids: restart positions at each document (see module docstring).

    Returns:
        ``(input_ids, position_ids, n_pad)``: int32 arrays of shape ``(rows, seq_len)``,
        ``(rows, seq_len)`` and ``(rows,)``.
    """
    if not docs:
        empty = np.empty((0, seq_len), dtype=np.int32)
        return empty, empty.copy(), np.empty(0, dtype=np.int32)
    lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=len(docs))
    total = int(lengths.sum())
    rows = -(-total // seq_len)
    stream = np.full(rows * seq_len, pad_id, dtype=np.int32)
    ends = np.cumsum(lengths)
    is_text = np.ones(total, dtype=bool)
    is_text[ends - 1] = False
    body = stream[:total]  # a view: fills the stream in place
    body[is_text] = np.concatenate([np.asarray(d, dtype=np.int32) for d in docs])
    body[ends - 1] = eos_id
    n_pad = np.zeros(rows, dtype=np.int32)
    n_pad[-1] = rows * seq_len - total
    if reset_position_ids:
        positions = _segment_positions(rows * seq_len, seq_len, ends - lengths, total)
    else:
        positions = np.tile(np.arange(seq_len, dtype=np.int32), rows)
    return stream.reshape(rows, seq_len), positions.reshape(rows, seq_len), n_pad


def _segment_positions(n: int, seq_len: int, doc_starts: np.ndarray, pad_start: int) -> np.ndarray:
    """Positions counting from the latest segment start (row start, document, pad tail)."""
    start = np.zeros(n, dtype=bool)
    start[::seq_len] = True
    start[doc_starts] = True
    if pad_start < n:
        start[pad_start] = True
    idx = np.arange(n, dtype=np.int64)
    last_start = np.maximum.accumulate(np.where(start, idx, 0))
    return (idx - last_start).astype(np.int32)


def unpack_documents(input_ids: np.ndarray, n_pad: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """Inverse of :func:`pack_documents` for one shard: the documents, EOS removed, in order."""
    rows = [np.asarray(r)[: len(r) - int(p)] for r, p in zip(input_ids, n_pad, strict=True)]
    if not rows:
        return []
    stream = np.concatenate(rows)
    cuts = np.flatnonzero(stream == eos_id)
    if cuts.size and cuts[-1] != stream.size - 1 or (not cuts.size and stream.size):
        raise ValueError("packed stream does not end with EOS: a shard was cut mid-document")
    starts = np.concatenate([[0], cuts[:-1] + 1])
    return [stream[s:e] for s, e in zip(starts, cuts, strict=True)]
