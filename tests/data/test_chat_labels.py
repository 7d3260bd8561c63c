"""Assistant-only labels agree with the chat template, token for token (tokenizer, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from soaes.data.chat import IGNORE_INDEX, render_batch
from soaes.data.tokenize import load_tokenizer

CONVS = [
    [
        {"role": "user", "content": "《中华人民共和国公司法》第一条规定了什么？"},
        {"role": "assistant", "content": "为了规范公司的组织和行为，制定本法。"},
    ],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi <|im_end|> there"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks!"},
    ],
]


@pytest.fixture(scope="module")
def tok(tiny_paths):
    return load_tokenizer(str(tiny_paths["tokenizer"]))


def test_ids_equal_the_template_and_labels_cover_only_replies(tok):
    for conv, (ids, labels) in zip(CONVS, render_batch(tok, CONVS), strict=True):
        ref = tok.apply_chat_template(conv, tokenize=True)["input_ids"]
        assert ids.tolist() == list(ref)
        trained = labels != IGNORE_INDEX
        assert (labels[trained] == ids[trained]).all()
        # Exactly the replies plus their end-of-turn token, in order, nothing else.
        want = "".join(m["content"] + tok.eos_token for m in conv if m["role"] == "assistant")
        assert tok.decode(ids[trained].tolist(), skip_special_tokens=False) == want
        # Everything else (system, user, role headers, newlines) is masked.
        rest = tok.decode(ids[~trained].tolist(), skip_special_tokens=False)
        assert all(m["content"] in rest for m in conv if m["role"] != "assistant")


def test_template_failure_is_reported_not_raised(tok):
    out = render_batch(tok, [[], CONVS[0]])
    assert isinstance(out[0], str) and isinstance(out[1][0], np.ndarray)
