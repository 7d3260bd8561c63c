"""Answer diagnostics, the echo baseline and the article-id scorer (pure)."""

from __future__ import annotations

import pytest

from soaes.eval.diagnostics import (
    article_id_score,
    chinese_number,
    echo_predictions,
    generation_diagnostics,
    has_loop,
)
from soaes.eval.qa import normalize_item, parse_qa_line, score_items


def rec(prediction, finish="stop", tokens=10, question="《民法典》第十条规定了什么？"):
    return {
        "question": question,
        "prediction": prediction,
        "finish_reason": finish,
        "output_tokens": tokens,
    }


def test_diagnostics_on_constructed_predictions():
    q = "《民法典》第十条规定了什么？"
    records = [
        rec("处理民事纠纷，应当依照法律。", "stop", 12),  # clean, EOS
        rec("", "stop", 0),  # empty
        rec("法律法律法律" * 10, "length", 64),  # cut at the cap, and a loop
        rec(q + "规定了", "length", 64),  # repeats the question, cut
    ]
    d = generation_diagnostics(records, max_new_tokens=64)
    assert d["n"] == 4 and d["mean_tokens"] == pytest.approx((12 + 0 + 64 + 64) / 4)
    assert d["share_truncated"] == 0.5 and d["share_eos"] == 0.5
    assert d["share_empty"] == 0.25 and d["share_repeat_question"] == 0.25
    assert d["share_loop"] == 0.25
    assert has_loop("the cat sat on the mat the cat sat on the mat the cat sat on the mat")
    assert not has_loop("the cat sat on the mat")
    assert has_loop("，" * 32)  # a run of full-width commas (seen from a tiny SFT model)


def test_echo_is_scored_like_a_model():
    items = [
        normalize_item(
            {"question": "What is a contract?", "answer": "A contract is an agreement."}, 1
        )
    ]
    per_item, agg = score_items(items, echo_predictions([items[0]["question"]]))
    assert per_item[0]["prediction"] == "What is a contract?" and agg["jieba"]["rouge-1"] > 0


def test_article_id_scorer():
    assert chinese_number("一百零五") == 105 and chinese_number("十二") == 12
    assert chinese_number("12") == 12 and chinese_number("abc") is None
    law = "中华人民共和国民法典"
    assert article_id_score("依据《民法典》第十二条", law, "第十二条") == 1.0
    assert article_id_score("依据中华人民共和国民法典第12条", law, "第十二条") == 1.0
    assert article_id_score("依据《民法典》第十三条", law, "第十二条") == 0.0
    assert article_id_score("依据《刑法》第十二条", law, "第十二条") == 0.0
    assert article_id_score("依据民法典第十二条之一", law, "第十二条") == 0.0
    assert article_id_score("民法典第十二条", law, "12") == 1.0


def test_eval_set_line_format_and_legacy_defaults():
    line = (
        '{"id": "a1", "set": "scenario_article", "question": "q", "answer": "第十二条", '
        '"cluster": "law:民法典:12", "law": "民法典", "article_no": "第十二条", '
        '"scoring": "article_id", "phrasing": "scenario", "seen_in_training": false, "lang": "zh"}'
    )
    obj, err = parse_qa_line(line.encode())
    assert err is None
    it = normalize_item(obj, 3)
    assert it["cluster"] == "law:民法典:12" and it["id"] == "a1" and it["scoring"] == "article_id"
    withheld = (
        '{"id": "law_withheld:9", "set": "law_withheld", "question": "q", "answer": "a", '
        '"cluster": "law_article:9", "law": null, "article_no": null, "scoring": "overlap", '
        '"phrasing": "p", "seen_in_training": "none", "lang": "zh"}'
    )
    obj, err = parse_qa_line(withheld.encode())
    assert err is None and normalize_item(obj, 1)["cluster"] == "law_article:9"
    legacy = normalize_item({"question": "q", "answer": "a"}, 7)
    assert legacy["id"] == "7" and legacy["cluster"] == "7" and legacy["scoring"] == "overlap"
    _, err = parse_qa_line(b'{"question": "q", "answer": "a", "scoring": "article_id"}')
    assert err == "missing field 'law'"
    per_item, agg = score_items([it], [{"prediction": "民法典第十二条", "finish_reason": "stop"}])
    assert agg == {"article_id": {"correct": 1.0}}
