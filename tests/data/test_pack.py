"""Packing is lossless and positions restart per document (pure, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from soaes.data.pack import pack_documents, unpack_documents

EOS, PAD = 2, 0


def _docs(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 500, size=rng.integers(1, 40)).astype(np.int32) for _ in range(n)]


@pytest.mark.parametrize("seq_len", [1, 7, 16, 64])
def test_unpack_gives_back_every_token_in_order(seq_len):
    docs = _docs(seq_len, 50)
    ids, pos, n_pad = pack_documents(docs, seq_len, EOS, PAD)
    assert ids.shape == pos.shape == (len(n_pad), seq_len)
    assert (n_pad[:-1] == 0).all() and 0 <= n_pad[-1] < seq_len
    back = unpack_documents(ids, n_pad, EOS)
    assert [d.tolist() for d in back] == [d.tolist() for d in docs]
    assert ids.size - n_pad.sum() == sum(len(d) + 1 for d in docs)
    assert (ids[-1, seq_len - n_pad[-1] :] == PAD).all()


def test_position_ids_restart_at_rows_documents_and_pad():
    docs = [np.arange(10, 15), np.arange(20, 23), np.arange(30, 42)]
    ids, pos, n_pad = pack_documents(docs, 8, EOS, PAD, reset_position_ids=True)
    # stream: 10..14 E | 20 21 22 E | 30..41 E | pad
    assert pos[0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
    assert pos[1].tolist() == [0, 1, 0, 1, 2, 3, 4, 5]  # row start, then the third doc
    assert pos[2].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]  # row start, then pad tail
    assert n_pad.tolist() == [0, 0, 1]
    _, flat, _ = pack_documents(docs, 8, EOS, PAD, reset_position_ids=False)
    assert (flat == np.arange(8)).all()


def test_unpack_refuses_a_stream_cut_mid_document():
    ids, _, n_pad = pack_documents([np.arange(3, 20)], 4, EOS, PAD)
    with pytest.raises(ValueError, match="does not end with EOS"):
        unpack_documents(ids[:2], np.zeros(2, dtype=np.int32), EOS)


def test_empty_input():
    ids, pos, n_pad = pack_documents([], 8, EOS, PAD)
    assert ids.shape == (0, 8) and n_pad.size == 0 and unpack_documents(ids, n_pad, EOS) == []
