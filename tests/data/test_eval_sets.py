"""The demo's domain eval sets: sized, one population each, no answer carried by its question.

Built from ``pipelines/data_sft_demo.yaml`` on the driver (the pipeline's own selection and
writer, no Ray: the SFT split only removes items that meet a train turn, tested in
test_sft_pipeline). The echo baseline answers each question with the question itself and
is scored with the eval's real ROUGE-1 (jieba convention, ×100).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soaes.config.loader import load_config
from soaes.data.eval_sets import select_eval_sets, write_eval_sets
from soaes.data.sft_rows import leak_key
from soaes.eval.metrics import score_pair

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "id",
    "set",
    "question",
    "answer",
    "cluster",
    "law",
    "article_no",
    "scoring",
    "phrasing",
    "seen_in_training",
    "lang",
}
# Mean echo ROUGE-1 allowed per set: article questions share only the law's subject words with
# the text; insurance questions share their topic words with the answer.
ECHO_BOUND = {"law_recall": 5.0, "law_withheld": 5.0, "insurance_zh": 10.0}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = load_config(ROOT / "pipelines" / "data_sft_demo.yaml")
    out = tmp_path_factory.mktemp("eval_sets")
    candidates = select_eval_sets(cfg)
    summary = write_eval_sets(out, candidates, np.empty(0, np.int64), cfg)
    sets = {
        name: [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in summary
    }
    return cfg, candidates, summary, sets, json.loads((out / "manifest.json").read_text())


def test_every_set_is_sized_and_clustered_by_document(demo):
    cfg, _, summary, sets, manifest = demo
    assert set(sets) == {"law_recall", "law_withheld", "scenario_article", "insurance_zh"}
    for name, items in sets.items():
        assert len(items) >= 200, (name, len(items))
        assert all(set(it) == FIELDS and it["set"] == name for it in items)
        assert len({it["cluster"] for it in items}) == len(items) == summary[name]["n_items"]
        assert len({it["id"] for it in items}) == len(items)
        print(name, summary[name]["n_items"], "items,", summary[name]["n_clusters"], "clusters")
    assert manifest["sets"] == summary and manifest["withheld_laws"] == cfg.withheld_laws


def test_echo_baseline_is_low_on_overlap_sets(demo):
    _, _, summary, sets, _ = demo
    for name, bound in ECHO_BOUND.items():
        r1 = [score_pair(it["question"], it["answer"], "jieba")["rouge-1"] for it in sets[name]]
        print(
            f"{name}: echo ROUGE-1 (jieba) mean {np.mean(r1):.2f} max {np.max(r1):.2f}; "
            f"answer chars in question {summary[name]['answer_chars_in_question']}"
        )
        assert all(it["scoring"] == "overlap" for it in sets[name])
        assert np.mean(r1) < bound, name
        assert not any(it["answer"] in it["question"] for it in sets[name])


def test_scenario_questions_name_neither_law_nor_article(demo):
    _, _, _, sets, _ = demo
    items = sets["scenario_article"]
    for it in items:
        assert (
            it["scoring"] == "article_id" and it["answer"] == f"《{it['law']}》{it['article_no']}"
        )
        short = it["law"].removeprefix("中华人民共和国")
        assert it["law"] not in it["question"] and short not in it["question"], it
        assert it["article_no"] not in it["question"], it
    echo_hits = sum(it["answer"] in it["question"] for it in items)  # exact or contained answer
    r1 = [score_pair(it["question"], it["answer"], "jieba")["rouge-1"] for it in items]
    print(
        f"scenario_article: echo answer found {echo_hits}/{len(items)}, ROUGE-1 mean {np.mean(r1):.2f}"
    )
    assert echo_hits == 0


def test_law_sets_draw_from_their_laws_in_held_out_phrasings(demo):
    cfg, _, _, sets, _ = demo
    withheld, recall = set(cfg.withheld_laws), set(cfg.eval_sets.recall_laws)
    assert {it["law"] for it in sets["law_withheld"]} == withheld
    for name in ("law_recall", "scenario_article"):
        assert {it["law"] for it in sets[name]} <= recall
        assert all(it["seen_in_training"] == "cpt_text" for it in sets[name])
    assert all(it["seen_in_training"] == "none" for it in sets["law_withheld"])
    for name in ("law_recall", "law_withheld"):
        assert len({it["phrasing"] for it in sets[name]}) >= 2


def test_items_meeting_a_train_turn_are_dropped(demo, tmp_path):
    cfg, candidates, _, _, _ = demo
    first = candidates["law_recall"][0]
    keys = np.array(sorted([leak_key(first["answer"])]), dtype=np.int64)
    summary = write_eval_sets(tmp_path, {"law_recall": candidates["law_recall"]}, keys, cfg)
    assert summary["law_recall"]["dropped_train_overlap"] == 1
    kept = (tmp_path / "law_recall.jsonl").read_text()
    assert first["id"] not in kept and summary["law_recall"]["n_items"] == cfg.eval_sets.size
