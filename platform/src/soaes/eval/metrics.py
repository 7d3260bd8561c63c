"""ROUGE-1/2/L and BLEU-4 for Chinese and English answers, in two labelled conventions.

Every number this module returns says which convention produced it, because Chinese
ROUGE/BLEU values are not comparable across tokenisations:

``jieba`` (LLaMA-Factory's convention, the one SOAEs-style papers report)
    Per sample, then averaged, ×100. ROUGE-1/2/L F1 over jieba words (Chinese) or lowercased
    ``[a-z0-9]+`` words (English); BLEU-4 over characters (Chinese) or sacrebleu-13a tokens
    (English), sentence-level with NIST geometric smoothing: nltk's ``SmoothingFunction()
    .method3``, which is what LLaMA-Factory calls. The BLEU is implemented here (pure Python)
    and checked against nltk in the tests. Whitespace is not a token (LLaMA-Factory keeps
    spaces as characters; Chinese answers rarely have any).

``sacrebleu``
    Corpus BLEU from sacrebleu with ``tokenize="zh"`` (Chinese) or ``"13a"`` (English);
    ROUGE-1/2/L F1 over characters (Chinese) or lowercased words (English), per sample
    averaged ×100. Per-sample BLEU uses sacrebleu's ``sentence_bleu`` (exp smoothing).

A text counts as Chinese when it contains a CJK ideograph. ``rouge-score``'s default
tokenizer keeps only ``[a-z0-9]`` and so scores every Chinese pair 0: never use it
unconfigured (a test shows this).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

CONVENTIONS = ("jieba", "sacrebleu")
METRIC_NAMES = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_EN_WORD = re.compile(r"[a-z0-9]+")


def is_chinese(text: str) -> bool:
    """True when ``text`` contains at least one CJK ideograph."""
    return bool(_CJK.search(text))


def char_tokens(text: str, lower: bool = False) -> list[str]:
    """Every non-whitespace character; ``lower`` for ROUGE (case-blind, as rouge-score)."""
    return [c for c in (text.lower() if lower else text) if not c.isspace()]


def en_word_tokens(text: str) -> list[str]:
    """Lowercased ``[a-z0-9]+`` words: rouge-score's default tokenisation, without stemming."""
    return _EN_WORD.findall(text.lower())


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(60)  # silence "Building prefix dict…" on every first use
    return jieba


def jieba_tokens(text: str) -> list[str]:
    """jieba words (``jieba.cut``, precise mode), whitespace tokens dropped, lowercased."""
    return [w.lower() for w in _jieba().cut(text) if w.strip()]


def bleu13a_tokens(text: str) -> list[str]:
    """sacrebleu's 13a (mteval) tokenisation, the standard for English BLEU."""
    return _tok13a()(text.strip()).split()


@lru_cache(maxsize=1)
def _tok13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, n_hyp: int, n_ref: int) -> float:
    if overlap == 0 or n_hyp == 0 or n_ref == 0:
        return 0.0
    p, r = overlap / n_hyp, overlap / n_ref
    return 2 * p * r / (p + r)


def rouge_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> float:
    """ROUGE-N F1 in [0, 1] of two token lists (clipped n-gram counts, as rouge-score)."""
    h, r = _ngrams(hyp, n), _ngrams(ref, n)
    return _f1(sum((h & r).values()), sum(h.values()), sum(r.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 in [0, 1]: LCS-based precision and recall, beta = 1 (rouge-score's rougeL)."""
    return _f1(lcs_length(hyp, ref), len(hyp), len(ref))


def sentence_bleu4(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """Sentence BLEU-4 in [0, 1] with NIST geometric smoothing (nltk's method3).

    p_n = clipped n-gram matches / max(1, hypothesis n-grams); each p_n with no match becomes
    1 / (2^k · denominator), k = 1, 2, … in order; no unigram match at all gives 0 (as
    nltk). Brevity penalty exp(1 - r/c) when c <= r.
    """
    if not hyp:
        return 0.0
    log_p = 0.0
    k = 1
    for n in range(1, 5):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        match, total = sum((h & r).values()), max(1, sum(h.values()))
        if match == 0:
            if n == 1:
                return 0.0
            p = 1 / (2**k * total)
            k += 1
        else:
            p = match / total
        log_p += 0.25 * math.log(p)
    c, r_len = len(hyp), len(ref)
    bp = 1.0 if c > r_len else math.exp(1 - r_len / c)
    return bp * math.exp(log_p)


def rouge_tokens(text: str, convention: str, zh: bool) -> list[str]:
    """Tokens ROUGE uses for ``text`` under a convention, for a Chinese or English pair."""
    if not zh:
        return en_word_tokens(text)
    return jieba_tokens(text) if convention == "jieba" else char_tokens(text, lower=True)


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r}: expected one of {CONVENTIONS}")


def score_pair(hyp: str, ref: str, convention: str = "jieba") -> dict[str, float]:
    """ROUGE-1/2/L and BLEU-4 of one answer against its reference, each ×100.

    The language is taken from the reference (a Chinese question answered in English
    scores against Chinese tokens, i.e. about zero).

    Args:
        hyp: the model's answer.
        ref: the reference answer.
        convention: ``"jieba"`` or ``"sacrebleu"``.

    Returns:
        ``{"rouge-1", "rouge-2", "rouge-l", "bleu-4"}`` on a 0-100 scale.
    """
    _check_convention(convention)
    zh = is_chinese(ref)
    h, r = rouge_tokens(hyp, convention, zh), rouge_tokens(ref, convention, zh)
    out = {"rouge-1": rouge_n(h, r, 1), "rouge-2": rouge_n(h, r, 2), "rouge-l": rouge_l(h, r)}
    if convention == "jieba":
        btok = char_tokens if zh else bleu13a_tokens
        out["bleu-4"] = sentence_bleu4(btok(hyp), btok(ref))
    else:
        import sacrebleu

        out["bleu-4"] = (
            sacrebleu.sentence_bleu(hyp, [ref], tokenize="zh" if zh else "13a").score / 100
        )
    return {k: 100 * v for k, v in out.items()}


def corpus_bleu_sacrebleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100): ``tokenize="zh"`` when any reference is Chinese, else 13a.

    sacrebleu's zh tokenizer splits CJK characters and applies 13a to everything else, so
    it is also right for a mixed zh/en corpus.
    """
    import sacrebleu

    if not hyps:
        return 0.0
    tokenize = "zh" if any(is_chinese(r) for r in refs) else "13a"
    return sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=tokenize).score


def score_corpus(hyps: Sequence[str], refs: Sequence[str], convention: str = "jieba") -> dict:
    """Aggregate scores (0-100) of a set of answers under one convention.

    ROUGE is the mean of per-sample F1 in both conventions; BLEU-4 is the per-sample mean
    (``jieba``) or sacrebleu's corpus BLEU (``sacrebleu``).

    Returns:
        ``{"convention", "n", "rouge-1", "rouge-2", "rouge-l", "bleu-4"}``.
    """
    _check_convention(convention)
    if len(hyps) != len(refs):
        raise ValueError(f"hyps ({len(hyps)}) and refs ({len(refs)}) differ in length")
    per = [score_pair(h, r, convention) for h, r in zip(hyps, refs, strict=True)]
    agg = {m: (sum(p[m] for p in per) / len(per) if per else 0.0) for m in METRIC_NAMES}
    if convention == "sacrebleu":
        agg["bleu-4"] = corpus_bleu_sacrebleu(hyps, refs)
    return {"convention": convention, "n": len(per), **agg}


def score_all(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, dict]:
    """Both conventions: ``{"jieba": {...}, "sacrebleu": {...}}``."""
    return {c: score_corpus(hyps, refs, c) for c in CONVENTIONS}
