"""Chat-template rendering with assistant-only labels.

The conversation is rendered once with the tokenizer's own chat template; the character
span of every assistant reply is found by rendering prefixes of the conversation (the text
before a reply is the render of the earlier messages with the generation prompt; the text
up to its end is the render including it). Tokens whose characters lie inside a span are
labelled with their id; every other token (system, user, role headers, separators) gets
-100. The trained span is the reply's content plus the template's end-of-turn token
(``<|im_end|>`` for ChatML), so the model learns to stop; the newline after it is not.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100


class TemplateError(ValueError):
    """The chat template does not render conversations incrementally (prefix property)."""


def assistant_spans(tok, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages``; return the text and the ``[start, end)`` span of each reply."""
    full = tok.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        head = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tok.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (full.startswith(upto) and upto.startswith(head)):
            raise TemplateError(f"template is not prefix-stable at message {i}")
        end = len(upto.rstrip())  # keep the end-of-turn token, drop the separator after it
        spans.append((len(head), end))
    return full, spans


def label_tokens(
    ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> np.ndarray:
    """Labels: the token id inside an assistant span, -100 elsewhere.

    Raises:
        TemplateError: a token straddles a span boundary (labels would be ambiguous).
    """
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
    starts = np.array([o[0] for o in offsets], dtype=np.int64)
    ends = np.array([o[1] for o in offsets], dtype=np.int64)
    for s, e in spans:
        inside = (starts >= s) & (ends <= e) & (ends > starts)
        straddle = (starts < s) & (ends > s) | (starts < e) & (ends > e)
        if straddle.any():
            raise TemplateError(f"a token straddles the assistant span [{s}, {e})")
        labels[inside] = np.asarray(ids, dtype=np.int32)[inside]
    return labels


def render_batch(tok, conversations: list[list[dict]]) -> list[tuple[np.ndarray, np.ndarray] | str]:
    """Render and label many conversations: ``(input_ids, labels)`` or an error message each.

    Uses the fast tokenizer's batch encoder with offsets on the rendered texts, with special
    tokens of the template recognised (they are real structure here, unlike in corpus text).
    """
    rendered, results = [], []
    for messages in conversations:
        try:
            rendered.append(assistant_spans(tok, messages))
        except Exception as e:  # noqa: BLE001 - a template failure quarantines one example
            rendered.append(f"{type(e).__name__}: {e}")
    texts = [r[0] for r in rendered if not isinstance(r, str)]
    encodings = iter(tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
    for r in rendered:
        if isinstance(r, str):
            results.append(r)
            continue
        enc = next(encodings)
        try:
            labels = label_tokens(enc.ids, enc.offsets, r[1])
        except TemplateError as e:
            results.append(str(e))
            continue
        results.append((np.asarray(enc.ids, dtype=np.int32), labels))
    return results
