"""Law question phrasings, keyword scenarios and the law include/withheld lists (no Ray)."""

from __future__ import annotations

import pytest

from soaes.assets.texts import iter_laws, law_articles
from soaes.data import law_questions as lq

SOE = ["中华人民共和国企业国有资产法", "中华人民共和国会计法"]
WITHHELD = ["中华人民共和国劳动合同法"]


def test_held_out_phrasings_never_render_as_a_training_phrasing():
    assert len(lq.HELD_OUT_ARTICLE) >= 2 and len(lq.HELD_OUT_SCENARIO) >= 2
    assert not set(lq.TRAIN_ARTICLE) & set(lq.HELD_OUT_ARTICLE)
    law, no = "中华人民共和国会计法", "第十条"
    for train, held in (
        (lq.TRAIN_ARTICLE, lq.HELD_OUT_ARTICLE),
        (lq.TRAIN_SCENARIO, lq.HELD_OUT_SCENARIO),
    ):
        for name, t in held.items():
            q = t.format(law=law, no=no, points="账簿、凭证、会计")
            assert not any(lq.template_regex(x).fullmatch(q) for x in train.values()), name
            assert lq.template_regex(t).fullmatch(q)


def test_pick_is_seeded_stable_and_uses_every_template():
    picks = [lq.pick(lq.TRAIN_ARTICLE, str(i), 0) for i in range(400)]
    assert picks == [lq.pick(lq.TRAIN_ARTICLE, str(i), 0) for i in range(400)]
    assert set(picks) == set(lq.TRAIN_ARTICLE)
    assert picks != [lq.pick(lq.TRAIN_ARTICLE, str(i), 1) for i in range(400)]


def test_scenario_points_name_neither_the_law_nor_an_article():
    text = (
        "依照本法第十二条的规定，公司法规定的国有独资公司应当建立健全财务、会计制度，"
        "中华人民共和国公司法另有规定的除外；董事会对出资人负责。"
    )
    points = lq.scenario_points(text, "中华人民共和国公司法")
    assert len(points) >= lq.MIN_POINTS
    q = lq.scenario_question("keywords", points)
    assert (
        "公司法" not in q and "中华人民共和国" not in q and "第十二条" not in q and "本法" not in q
    )


def test_answer_chars_in_question():
    assert lq.answer_chars_in_question("甲乙丙", "甲乙") == 1.0
    assert lq.answer_chars_in_question("甲", "甲乙，") == 0.5
    assert lq.answer_chars_in_question("x", "") == 0.0


def test_law_lists_include_and_withheld_always_wins():
    rows = law_articles(SOE + WITHHELD, WITHHELD)
    assert {r[1] for r in rows} == set(SOE) and len(rows) == 77 + 51
    docs = list(iter_laws(withheld=WITHHELD))
    assert len(docs) == len(law_articles()) - 98
    assert not any(text.startswith(WITHHELD[0]) for _, text in docs)
    with pytest.raises(ValueError, match="劳动合同"):
        law_articles(withheld=["劳动合同法"])  # not the exact law_name: refused, never ignored
