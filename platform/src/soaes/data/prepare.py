"""The per-batch CPT worker step: uid, clean/filter, content hash, MinHash bands, tokens.

Runs inside Ray Data ``map_batches`` tasks (Arrow in, Arrow out). Every input row leaves
as exactly one output row with a ``status`` (``ok``, ``filtered``, ``quarantined``) and a
``reason``, so counts can be reconciled per source later.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from soaes.data import dedup
from soaes.data.clean import OK, QUARANTINED, classify, dedup_key_text
from soaes.data.read import PREVIEW_CHARS
from soaes.data.tokenize import encode_texts, list_array

WORK_SCHEMA = pa.schema(
    [
        ("uid", pa.int64()),
        ("source", pa.string()),
        ("group", pa.string()),
        ("doc_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("preview", pa.string()),
        ("n_chars", pa.int64()),
        ("content_hash", pa.int64()),
        ("bands", pa.list_(pa.int64())),
        ("sig", pa.list_(pa.uint32())),
        ("input_ids", pa.list_(pa.int32())),
        ("n_tokens", pa.int64()),
    ]
)


@functools.lru_cache(maxsize=4)
def _perms(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    return dedup.perm_params(num_perm)


def signature(
    text: str, num_perm: int, bands: int, shingle_chars: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(minhash signature, LSH band keys)`` of a document's dedup text."""
    a, b = _perms(num_perm)
    sig = dedup.minhash(dedup.shingle_hashes(dedup_key_text(text), shingle_chars), a, b)
    return sig, dedup.band_keys(sig, bands)


def prepare_batch(batch: pa.Table, clean: dict, near: dict | None, tokenizer: str) -> pa.Table:
    """Reader rows -> work rows (see ``WORK_SCHEMA``).

    Args:
        batch: reader rows (``source, group, key, doc_id, text, reason, detail``).
        clean: ``CleanConfig`` fields (min_chars, max_chars, min_script_ratio).
        near: ``DedupConfig`` fields when near dedup is on, else None (no signatures).
        tokenizer: local tokenizer folder.
    """
    cols = {
        k: batch.column(k).to_pylist()
        for k in ("source", "group", "key", "doc_id", "text", "reason", "detail")
    }
    n = batch.num_rows
    status, reason, detail, preview = [""] * n, list(cols["reason"]), list(cols["detail"]), [""] * n
    texts, n_chars = [""] * n, np.zeros(n, dtype=np.int64)
    for i in range(n):
        text = cols["text"][i]
        n_chars[i] = len(text)
        if reason[i]:
            status[i], preview[i] = QUARANTINED, text[:PREVIEW_CHARS]
            continue
        texts[i], status[i], reason[i] = classify(text, **clean)
        if status[i] == QUARANTINED:
            preview[i], texts[i], detail[i] = text[:PREVIEW_CHARS], "", f"{len(text)} chars"
    ok = [i for i in range(n) if status[i] == OK]
    ids: list = [np.empty(0, np.int32)] * n
    for i, seq in zip(ok, encode_texts(tokenizer, [texts[i] for i in ok]), strict=True):
        ids[i] = seq
    sigs: list = [np.empty(0, np.uint32)] * n
    bands: list = [np.empty(0, np.int64)] * n
    if near:
        for i in ok:
            sigs[i], bands[i] = signature(texts[i], **near)
    uid = [
        dedup.stable_hash64(f"{s}\x00{k}") for s, k in zip(cols["source"], cols["key"], strict=True)
    ]
    chash = [dedup.stable_hash64(t) if s == OK else 0 for t, s in zip(texts, status, strict=True)]
    return pa.table(
        {
            "uid": pa.array(uid, pa.int64()),
            "source": cols["source"],
            "group": cols["group"],
            "doc_id": cols["doc_id"],
            "status": status,
            "reason": reason,
            "detail": detail,
            "preview": preview,
            "n_chars": n_chars,
            "content_hash": pa.array(chash, pa.int64()),
            "bands": list_array(bands, np.int64),
            "sig": list_array(sigs, np.uint32),
            "input_ids": list_array(ids, np.int32),
            "n_tokens": np.fromiter((len(x) for x in ids), dtype=np.int64, count=n),
        },
        schema=WORK_SCHEMA,
    )
