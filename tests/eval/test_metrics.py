"""ROUGE/BLEU on hand-computed Chinese and English cases, both conventions; bootstrap CI."""

from __future__ import annotations

import math
import random

import pytest

from soaes.eval import metrics as M


def approx(x, rel=1e-9):
    return pytest.approx(x, rel=rel)


def test_chinese_jieba_convention():
    # jieba: ref 我/爱/北京/天安门 (4 words), hyp 我/爱/北京 (3 words).
    assert M.jieba_tokens("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    s = M.score_pair("我爱北京", "我爱北京天安门", "jieba")
    # ROUGE-1: 3 shared words, P = 3/3, R = 3/4 -> F1 = 2·1·0.75/1.75 = 6/7.
    assert s["rouge-1"] == approx(600 / 7)
    # ROUGE-2: bigrams (我,爱) (爱,北京) shared; P = 2/2, R = 2/3 -> F1 = 0.8.
    assert s["rouge-2"] == approx(80.0)
    # ROUGE-L: LCS = 3 words -> same as ROUGE-1.
    assert s["rouge-l"] == approx(600 / 7)
    # BLEU-4 over characters: hyp 4 chars all inside the 7-char ref, p1..p4 = 1;
    # brevity penalty exp(1 - 7/4) = exp(-0.75) = 0.47237.
    assert s["bleu-4"] == approx(100 * math.exp(-0.75))


def test_chinese_bleu_smoothing_and_sacrebleu_convention():
    # hyp 我爱上海 vs ref 我爱北京 (characters): p1 = 2/4, p2 = 1/3, no 3- or 4-gram match:
    # NIST smoothing p3 = 1/(2·2), p4 = 1/(4·1); BP = 1 (equal lengths).
    # BLEU = (0.5 · 1/3 · 0.25 · 0.25)^(1/4) = 0.0104167^(1/4) = 0.319472.
    s = M.score_pair("我爱上海", "我爱北京", "jieba")
    assert s["bleu-4"] == approx(100 * (0.5 / 3 * 0.25 * 0.25) ** 0.25)
    # jieba words 我/爱/上海 vs 我/爱/北京: ROUGE-1 = 2/3, ROUGE-2 = 1/2.
    assert (s["rouge-1"], s["rouge-2"]) == (approx(200 / 3), approx(50.0))
    # sacrebleu convention, characters: ROUGE-1 = 2/4 = 50, ROUGE-2 = 1/3, ROUGE-L = 50.
    c = M.score_pair("我爱上海", "我爱北京", "sacrebleu")
    assert (c["rouge-1"], c["rouge-2"], c["rouge-l"]) == (
        approx(50.0),
        approx(100 / 3),
        approx(50.0),
    )
    # Corpus BLEU (tokenize="zh", one sentence): 4 vs 7 chars, all n-grams match,
    # BP = exp(1 - 7/4) -> 47.237; character ROUGE-1: P = 1, R = 4/7 -> F1 = 8/11.
    agg = M.score_corpus(["我爱北京"], ["我爱北京天安门"], "sacrebleu")
    assert agg["bleu-4"] == approx(100 * math.exp(-0.75), rel=1e-6)
    assert agg["rouge-1"] == approx(800 / 11) and agg["convention"] == "sacrebleu"


def test_english_both_conventions():
    hyp, ref = "The cat sat on a mat.", "The cat sat on the mat."
    # Words (lowercased): hyp the cat sat on a mat / ref the cat sat on the mat (6 each).
    # ROUGE-1: the, cat, sat, on, mat shared = 5 -> 5/6. ROUGE-2: the cat, cat sat, sat on
    # shared of 5 bigrams each -> 3/5. ROUGE-L: LCS the cat sat on mat = 5 -> 5/6.
    # BLEU 13a tokens: The cat sat on a mat . vs The cat sat on the mat . (7 each):
    # p1 = 6/7, p2 = 4/6, p3 = 2/5, p4 = 1/4, BP = 1 -> (6/7·4/6·2/5·1/4)^(1/4) = 0.488923.
    for conv in M.CONVENTIONS:
        s = M.score_pair(hyp, ref, conv)
        assert s["rouge-1"] == approx(500 / 6) and s["rouge-l"] == approx(500 / 6)
        assert s["rouge-2"] == approx(60.0)
        assert s["bleu-4"] == approx(100 * (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25, rel=1e-6)


def test_rouge_score_default_drops_chinese_ours_does_not():
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rouge1", "rougeL"])
    assert default.score("我爱北京天安门", "我爱北京")["rouge1"].fmeasure == 0.0
    assert M.score_pair("我爱北京", "我爱北京天安门", "jieba")["rouge-1"] > 80
    assert M.score_pair("我爱北京", "我爱北京天安门", "sacrebleu")["rouge-1"] > 70


class _JiebaTok:
    def tokenize(self, text):
        return M.jieba_tokens(text)


def test_rouge_matches_rouge_score_with_jieba_tokenizer():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_JiebaTok())
    pairs = [
        ("公司应当依法纳税，接受监督。", "公司必须依法纳税并接受政府和社会公众的监督。"),
        (
            "国家出资企业由国务院代表国家履行出资人职责。",
            "国务院和地方人民政府依照法律规定代表国家履行出资人职责。",
        ),
    ]
    for hyp, ref in pairs:
        ref_s = scorer.score(ref, hyp)
        ours = M.score_pair(hyp, ref, "jieba")
        assert ours["rouge-1"] == approx(100 * ref_s["rouge1"].fmeasure)
        assert ours["rouge-2"] == approx(100 * ref_s["rouge2"].fmeasure)
        assert ours["rouge-l"] == approx(100 * ref_s["rougeL"].fmeasure)


def test_bleu_matches_nltk_method3():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    rng = random.Random(0)
    smooth = SmoothingFunction().method3
    for _ in range(300):
        h = [rng.choice("法律公司国家") for _ in range(rng.randint(1, 12))]
        r = [rng.choice("法律公司国家") for _ in range(rng.randint(1, 12))]
        assert M.sentence_bleu4(h, r) == pytest.approx(
            sentence_bleu([r], h, smoothing_function=smooth)
        )


def test_edge_cases():
    assert M.score_pair("", "我爱北京")["bleu-4"] == 0.0
    assert M.score_pair("完全不同", "我爱北京", "jieba") == {m: 0.0 for m in M.METRIC_NAMES}
    assert M.score_pair("the same text is here", "the same text is here")["bleu-4"] == approx(100.0)
    # 3 tokens have no 4-gram: p4 smoothed to 1/(2·1), BLEU = 0.5^(1/4) = 0.840896.
    assert M.score_pair("same text here", "same text here")["bleu-4"] == approx(100 * 0.5**0.25)
    with pytest.raises(ValueError, match="convention"):
        M.score_pair("a", "b", "rouge-score")
    both = M.score_all(["我爱北京"], ["我爱北京天安门"])
    assert set(both) == {"jieba", "sacrebleu"} and both["jieba"]["n"] == 1
