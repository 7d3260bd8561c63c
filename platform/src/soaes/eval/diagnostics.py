"""What the answers look like, and the scorers that do not need a reference text.

Per model and set, :func:`generation_diagnostics` counts answer length, answers cut at the
token cap, empty answers, answers ended by EOS, answers that repeat the question and
answers stuck in a loop. An arm whose scores are low because it produced nothing, looped or
ran into the cap shows it here before anyone reads its ratio as an effect.

:func:`article_id_score` scores ``article_id`` items (a scenario asks which article
applies): 1 when the prediction names the law and the article number, else 0.
:func:`echo_predictions` is the trivial baseline: the question itself as the answer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

LOOP_N = 4  # a loop: some n-gram of this many tokens ...
LOOP_REPEATS = 3  # ... occurring at least this many times
# CJK ideographs, CJK punctuation and full-width forms: text with any is split into characters.
_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CN_DIGITS |= {"五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_ARTICLE = re.compile(
    r"第\s*([0-9零〇一二两三四五六七八九十百千]+)\s*条(?:之([一二三四五六七八九十]+))?"
)
_PRC = "中华人民共和国"


def text_tokens(text: str) -> list[str]:
    """Characters of Chinese text (no spaces), lowercased words otherwise.

    Full-width punctuation counts as Chinese: ``，，，，`` is a loop of characters.
    """
    if _CJK.search(text):
        return [c for c in text if not c.isspace()]
    return text.lower().split()


def has_loop(text: str, n: int = LOOP_N, repeats: int = LOOP_REPEATS) -> bool:
    """True when some ``n``-gram of tokens occurs ``repeats`` times or more."""
    toks = text_tokens(text)
    grams = Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return bool(grams) and max(grams.values()) >= repeats


def repeats_question(prediction: str, question: str) -> bool:
    """True when the answer contains the whole question (whitespace ignored)."""
    p, q = re.sub(r"\s+", "", prediction), re.sub(r"\s+", "", question)
    return bool(q) and q in p


def generation_diagnostics(
    records: Sequence[dict[str, Any]], max_new_tokens: int
) -> dict[str, float | int]:
    """Shares over one model's answers to one set.

    Args:
        records: ``{question, prediction, finish_reason, output_tokens}`` per item
            (``finish_reason`` as vLLM reports it: "stop" for EOS/stop, "length" for the cap).
        max_new_tokens: the generation cap.

    Returns:
        ``{n, max_new_tokens, mean_tokens, share_truncated, share_empty, share_eos,
        share_repeat_question, share_loop}``.
    """
    n = len(records)
    if n == 0:
        raise ValueError("generation_diagnostics: no records")

    def share(flags) -> float:
        return sum(1 for f in flags if f) / n

    return {
        "n": n,
        "max_new_tokens": max_new_tokens,
        "mean_tokens": sum(r["output_tokens"] for r in records) / n,
        "share_truncated": share(
            r["finish_reason"] == "length" or r["output_tokens"] >= max_new_tokens for r in records
        ),
        "share_empty": share(not r["prediction"].strip() for r in records),
        "share_eos": share(r["finish_reason"] == "stop" for r in records),
        "share_repeat_question": share(
            repeats_question(r["prediction"], r["question"]) for r in records
        ),
        "share_loop": share(has_loop(r["prediction"]) for r in records),
    }


def echo_predictions(questions: Sequence[str]) -> list[dict[str, Any]]:
    """The echo pseudo-model's generations: each question returned as its own answer."""
    return [
        {
            "prediction": q,
            "finish_reason": "echo",
            "prompt_tokens": 0,
            "output_tokens": len(text_tokens(q)),
        }
        for q in questions
    ]


def chinese_number(text: str) -> int | None:
    """``"12"``, ``"十二"``, ``"一百零五"`` -> int; None when it is not a number."""
    if text.isdigit():
        return int(text)
    total, digit = 0, None
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            total += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
        else:
            return None
    return total + (digit or 0)


def article_numbers(text: str) -> set[tuple[int, int]]:
    """Every ``第N条`` (``第N条之M``) in a text as ``(N, M)`` (M = 0 without 之)."""
    out = set()
    for main, sub in _ARTICLE.findall(text):
        n = chinese_number(main)
        if n is not None:
            out.add((n, (chinese_number(sub) or 0) if sub else 0))
    return out


def names_law(prediction: str, law: str) -> bool:
    """The law's name in the prediction: in full, or without the 中华人民共和国 prefix."""
    name = law.strip().strip("《》")
    short = name.removeprefix(_PRC)
    return name in prediction or (bool(short) and short != name and short in prediction)


def article_id_score(prediction: str, law: str, article_no: str) -> float:
    """1.0 when the prediction names ``law`` and the article ``article_no`` (e.g. 第十二条)."""
    wanted = article_numbers(article_no)
    if not wanted and (bare := chinese_number(article_no.strip())) is not None:
        wanted = {(bare, 0)}
    if not wanted:
        raise ValueError(f"article_no {article_no!r}: no 第N条 in it")
    return float(names_law(prediction, law) and bool(wanted & article_numbers(prediction)))
