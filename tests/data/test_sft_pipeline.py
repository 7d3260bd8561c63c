"""End to end ``data_sft`` on the real chat and domain corpora plus a corrupted user jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from soaes.assets.texts import law_articles
from soaes.config.loader import load_config, validate_config
from soaes.data import law_questions as lq
from soaes.data.sft import run_sft_data
from soaes.data.tokenize import load_tokenizer

pytestmark = pytest.mark.heavy
SPLITS = ("train", "validation", "test")
STAGES = ("stage1_chat", "stage2_domain", "stage3_focus")
ROOT = Path(__file__).resolve().parents[2]
# the shipped withheld list; stage 3 names one of them in its include list: withheld wins
WITHHELD = load_config(ROOT / "pipelines" / "data_sft_tiny.yaml").withheld_laws
FOCUS = ["中华人民共和国企业国有资产法", WITHHELD[1]]
RECALL = ["中华人民共和国企业国有资产法", "中华人民共和国会计法"]
GOOD = {
    "messages": [
        {"role": "system", "content": "你是法律助手。"},
        {"role": "user", "content": "什么是要约？"},
        {"role": "assistant", "content": "要约是希望与他人订立合同的意思表示。"},
        {"role": "user", "content": "要约可以撤回吗？"},
        {"role": "assistant", "content": "可以，撤回通知应当在要约到达受要约人之前或者同时到达。"},
    ]
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_session, tiny_paths):
    root = tmp_path_factory.mktemp("sft")
    lines = [
        json.dumps(GOOD, ensure_ascii=False).encode(),
        b'{"messages": [',  # bad_json
        b'{"messages": [{"role": "user", "content": "\xff"}]}',  # invalid_utf8
        b"",  # empty_record
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),  # no_assistant_turn
        json.dumps({"messages": [{"role": "bot", "content": "x"}]}).encode(),  # bad_messages
        json.dumps({"text": "no messages"}).encode(),  # missing_field
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "长"},
                    {"role": "assistant", "content": "长" * 3000},
                ]
            },
            ensure_ascii=False,
        ).encode(),  # too_long
    ]
    (root / "user.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = validate_config(
        {
            "kind": "data_sft",
            "name": "test_sft",
            "output_dir": str(root / "out"),
            "tokenizer": str(tiny_paths["tokenizer"]),
            "max_len": 512,
            "rows_per_shard": 150,
            "validation_fraction": 0.1,
            "test_fraction": 0.1,
            "stages": [
                {
                    "name": "stage1_chat",
                    "sources": [
                        {"name": "chatterbot_zh"},
                        {"name": "jsonl", "path": str(root / "user.jsonl"), "weight": 2},
                    ],
                },
                {
                    "name": "stage2_domain",
                    "epochs": 2,
                    "sources": [
                        {"name": "laws_qa", "max_examples": 400},
                        {"name": "insuranceqa_zh", "max_examples": 200},
                    ],
                },
                {"name": "stage3_focus", "sources": [{"name": "laws_qa", "laws": FOCUS}]},
            ],
            "withheld_laws": WITHHELD,
            "eval_sets": {"size": 30, "recall_laws": RECALL},
        }
    )
    summary = run_sft_data(cfg)
    out = Path(cfg.output_dir)
    return {
        "out": out,
        "summary": summary,
        "manifest": json.loads((out / "manifest.json").read_text()),
        "tok": load_tokenizer(str(tiny_paths["tokenizer"])),
        "jsonl": f"jsonl:{root / 'user.jsonl'}",
    }


def _rows(out: Path, stage: str, split: str) -> list[dict]:
    files = sorted((out / stage / split).glob("*.parquet"))
    assert files, f"{stage}/{split} has no parquet file"
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _expected_mask(ids: list[int], tok) -> np.ndarray:
    """Independent oracle from token ids: inside ``<|im_start|>assistant\\n … <|im_end|>``."""
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    mask, i = np.zeros(len(ids), dtype=bool), 0
    while i < len(ids):
        if ids[i] != start:
            i += 1
            continue
        j = i + 1
        while not tok.decode(ids[i + 1 : j]).endswith("\n"):
            j += 1
        role, k = tok.decode(ids[i + 1 : j]).strip(), j
        while ids[k] != end:
            k += 1
        mask[j : k + 1] = role == "assistant"
        i = k + 1
    return mask


def test_labels_are_minus_100_exactly_on_non_assistant_tokens(run):
    tok = run["tok"]
    for stage in STAGES:
        for split in SPLITS:
            for r in _rows(run["out"], stage, split)[:40]:
                labels, ids = np.array(r["labels"]), np.array(r["input_ids"])
                mask = _expected_mask(r["input_ids"], tok)
                assert ((labels != -100) == mask).all(), r["example_id"]
                assert (labels[mask] == ids[mask]).all()


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _turns(ids: list[int], tok) -> list[str]:
    text = tok.decode(ids, skip_special_tokens=False)
    parts = re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", text, flags=re.S)
    return [c for role, c in parts if role in ("user", "assistant")]


def test_no_test_question_or_answer_in_any_train_split(run):
    out, tok = run["out"], run["tok"]
    seen = {
        _norm(t)
        for st in ("stage1_chat", "stage2_domain")
        for r in _rows(out, st, "train")
        for t in _turns(r["input_ids"], tok)
    }
    qa = [
        json.loads(x)
        for st in ("stage1_chat", "stage2_domain")
        for x in (out / st / "test" / "qa.jsonl").read_text().splitlines()
    ]
    assert sum(item["source"] in ("laws_qa", "insuranceqa_zh") for item in qa) >= 20
    for item in qa:
        assert _norm(item["question"]) not in seen and _norm(item["answer"]) not in seen, item
    # law articles are split as a unit: both questions of an article share one split
    where: dict = {}
    for split in SPLITS:
        for r in _rows(out, "stage2_domain", split):
            if r["source"] == "laws_qa":
                where.setdefault(r["example_id"].rsplit(":", 1)[0], set()).add(split)
    assert where and all(len(s) == 1 for s in where.values())


def test_manifest_counts_match_files_and_quarantine(run):
    m, out = run["manifest"], run["out"]
    assert [s["name"] for s in m["stages"]] == list(STAGES)
    assert m["stages"][1]["epochs"] == 2
    for st in m["stages"]:
        for split in SPLITS:
            rows = _rows(out, st["name"], split)
            c = st["counts"][split]
            assert len(rows) == c["examples"] == sum(c["by_source"].values())
            assert all(set(r) == {"input_ids", "labels", "source", "example_id"} for r in rows[:5])
        qa = (out / st["name"] / "test" / "qa.jsonl").read_text().splitlines()
        assert len(qa) == st["counts"]["test"]["examples"]
    user = m["sources"]["stage1_chat"][run["jsonl"]]
    assert user["docs_in"] == 8 and user["docs_out"] == 1
    assert user["quarantined"] == {
        "bad_json": 1,
        "invalid_utf8": 1,
        "empty_record": 1,
        "no_assistant_turn": 1,
        "bad_messages": 1,
        "missing_field": 1,
        "too_long": 1,
    }
    for counts in m["sources"].values():
        for name, c in counts.items():
            rest = (
                c["docs_out"]
                + sum(c["filtered"].values())
                + sum(c["quarantined"].values())
                + c["exact_dups"]
            )
            assert rest == c["docs_in"], name
    laws = m["sources"]["stage2_domain"]["laws_qa"]
    # the cap counts distinct well-formed examples, before rendering (too_long comes later)
    capped = (
        laws["docs_in"] - 400 - laws["exact_dups"] - laws["quarantined"].get("missing_field", 0)
    )
    assert laws["filtered"]["over_max_examples"] == capped
    records = (out / "quarantine" / "quarantine.jsonl").read_text().splitlines()
    assert len(records) == m["quarantine"]["records"] == sum(m["quarantine"]["by_reason"].values())


def _eval_sets(out: Path) -> dict[str, list[dict]]:
    folder = out / "eval_sets"
    names = json.loads((folder / "manifest.json").read_text())["sets"]
    return {
        n: [json.loads(x) for x in (folder / f"{n}.jsonl").read_text().splitlines()] for n in names
    }


def _article_id(example_id: str) -> int:
    return int(example_id.split(":")[1])  # laws_qa:<article id>:<direct|scenario>


def test_withheld_laws_reach_no_split_and_no_other_eval_set(run):
    out, tok = run["out"], run["tok"]
    withheld = law_articles(WITHHELD)
    ids, texts = {r[0] for r in withheld}, {_norm(r[3]) for r in withheld if len(r[3]) >= 20}
    focus = {r[0] for r in law_articles(FOCUS[:1])}
    n_laws = 0
    for st in STAGES:
        for split in SPLITS:
            for r in _rows(out, st, split):
                if r["source"] == "laws_qa":
                    n_laws += 1
                    assert _article_id(r["example_id"]) not in ids, r["example_id"]
                    assert st != "stage3_focus" or _article_id(r["example_id"]) in focus
                turns = _turns(r["input_ids"], tok)
                assert not any(w in t for t in turns for w in WITHHELD), r["example_id"]
                assert not {_norm(t) for t in turns} & texts, r["example_id"]
    stage3 = run["manifest"]["sources"]["stage3_focus"]["laws_qa"]
    assert n_laws >= 300 and stage3["docs_out"] >= 100  # 77 articles, ~2 questions each
    sets = _eval_sets(out)
    assert {it["law"] for it in sets["law_withheld"]} == set(WITHHELD)
    for name, items in sets.items():
        if name != "law_withheld":
            assert items and not {it["law"] for it in items} & set(WITHHELD), name


def test_held_out_phrasings_never_in_a_train_split(run):
    out, tok = run["out"], run["tok"]
    held = [
        lq.template_regex(t)
        for t in (*lq.HELD_OUT_ARTICLE.values(), *lq.HELD_OUT_SCENARIO.values())
    ]
    train = {
        n: lq.template_regex(t) for n, t in (*lq.TRAIN_ARTICLE.items(), *lq.TRAIN_SCENARIO.items())
    }
    used = set()
    for st in STAGES:
        for r in _rows(out, st, "train"):
            for turn in _turns(r["input_ids"], tok)[::2]:  # user turns
                assert not any(h.fullmatch(turn) for h in held), turn
                used |= {n for n, rx in train.items() if rx.fullmatch(turn)}
    assert used == set(train)  # every training phrasing is in use (so the check can bite)


def test_eval_documents_are_reserved_to_the_test_split(run):
    out, tok = run["out"], run["tok"]
    sets = _eval_sets(out)
    reserved = {
        int(it["cluster"].split(":")[1])
        for n in ("law_recall", "scenario_article")
        for it in sets[n]
    }
    assert {it["law"] for n in ("law_recall", "scenario_article") for it in sets[n]} <= set(RECALL)
    where = {}
    for split in SPLITS:
        for r in _rows(out, "stage3_focus", split):
            if _article_id(r["example_id"]) in reserved:
                where.setdefault(_article_id(r["example_id"]), set()).add(split)
    assert where and all(s == {"test"} for s in where.values())
    seen = {
        _norm(t)
        for st in STAGES
        for r in _rows(out, st, "train")
        for t in _turns(r["input_ids"], tok)
    }
    for name, items in sets.items():
        assert 20 <= len(items) <= 30, name
        assert not any(
            _norm(it["question"]) in seen or _norm(it["answer"]) in seen for it in items
        ), name
    m = json.loads((out / "eval_sets" / "manifest.json").read_text())
    assert m["sets"] == run["manifest"]["eval_sets"]
