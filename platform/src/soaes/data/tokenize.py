"""Tokenizer loading for Ray workers (once per process) and token-id arrays for Arrow.

Corpus text is encoded with special tokens treated as plain text: a literal ``<|im_end|>``
inside a document must not become the EOS id, or packed documents could not be split back
(and a model would learn a false end of document). Chat rendering for SFT, by contrast,
relies on the template's special tokens, so it uses the tokenizer as loaded.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from soaes.models.presets import resolve


def resolve_tokenizer(handle: str) -> str:
    """A tokenizer handle (``tiny/tokenizer``, ``smollm2/base``, a folder) -> local folder."""
    return resolve(handle)


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The transformers fast tokenizer of ``path`` (cached per worker process)."""
    # Ray runs one task per CPU already; Rust-side threads would oversubscribe the cores.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@functools.lru_cache(maxsize=4)
def plain_encoder(path: str):
    """A copy of the fast tokenizer's Rust backend that encodes special tokens as text.

    Read straight from ``tokenizer.json`` with the ``tokenizers`` library when the folder has
    one: a fresh Ray Data worker then skips importing transformers (about 5 s of CPU per
    worker process, which dominated small and medium data jobs). Truncation and padding
    stored in the file are switched off; the ids equal those of the transformers-loaded
    backend (tested). Folders without ``tokenizer.json`` go through transformers.
    """
    import tokenizers

    file = Path(path) / "tokenizer.json"
    if file.is_file():
        backend = tokenizers.Tokenizer.from_file(str(file))
        backend.no_truncation()
        backend.no_padding()
        backend.encode_special_tokens = True
        return backend
    return transformers_plain_encoder(path)


def transformers_plain_encoder(path: str):
    """The same encoder built from the transformers-loaded tokenizer (the reference)."""
    import tokenizers

    backend = tokenizers.Tokenizer.from_str(load_tokenizer(path).backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    return backend


def encode_texts(path: str, texts: list[str]) -> list[list[int]]:
    """Token ids of each text (no BOS/EOS added, special tokens as plain text)."""
    enc = plain_encoder(path)
    fast = getattr(enc, "encode_batch_fast", enc.encode_batch)  # skips offsets when available
    return [e.ids for e in fast(texts, add_special_tokens=False)]


def special_ids(path: str) -> tuple[int, int]:
    """``(eos_id, pad_id)``; the pad id falls back to EOS when the tokenizer has none."""
    tok = load_tokenizer(path)
    if tok.eos_token_id is None:
        raise ValueError(f"tokenizer {path}: no eos_token; packing needs one")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(tok.eos_token_id), int(pad)


def list_array(seqs: list, dtype=np.int32) -> pa.ListArray:
    """Variable-length integer sequences -> an Arrow ``list<int>`` array, without a Python loop
    over elements."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    offsets = np.zeros(len(seqs) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = (
        np.concatenate([np.asarray(s, dtype=dtype) for s in seqs])
        if len(seqs)
        else np.empty(0, dtype)
    )
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(dtype, copy=False)))


def list_column(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """An Arrow ``list<int>`` column -> one numpy array per row (zero-copy slices)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(arr))]
