"""The data workers' encoder, read from tokenizer.json without transformers, gives the ids
of the transformers-loaded backend on real text (and keeps special tokens as plain text)."""

from __future__ import annotations

import itertools

import pytest

from soaes.data.tokenize import (
    encode_texts,
    load_tokenizer,
    plain_encoder,
    resolve_tokenizer,
    transformers_plain_encoder,
)


@pytest.mark.parametrize("handle", ["tiny/tokenizer", "smollm2/base", "qwen2/tokenizer"])
def test_file_encoder_equals_transformers_backend(handle, tiny_paths):
    from soaes.bench.data import corpus_texts

    path = resolve_tokenizer(handle)
    texts = list(itertools.islice(corpus_texts(), 300))
    texts += ["a literal <|im_end|> and <|endoftext|> inside a document", "  spaces\tand\nlines "]
    ref = transformers_plain_encoder(path).encode_batch(texts, add_special_tokens=False)
    got = encode_texts(path, texts)
    assert got == [e.ids for e in ref]
    assert sum(map(len, got)) > 10_000
    eos = load_tokenizer(path).eos_token_id
    assert eos not in got[-2]  # the literal special token was not turned into EOS
    assert plain_encoder(path) is plain_encoder(path)  # built once per worker process
