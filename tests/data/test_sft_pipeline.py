"""End to end ``data_sft`` on the real chat and domain corpora plus a corrupted user jsonl."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from soaes.config.loader import validate_config
from soaes.data.sft import run_sft_data
from soaes.data.tokenize import load_tokenizer

pytestmark = pytest.mark.heavy
SPLITS = ("train", "validation", "test")
GOOD = {"messages": [{"role": "system", "content": "你是法律助手。"},
                     {"role": "user", "content": "什么是要约？"},
                     {"role": "assistant", "content": "要约是希望与他人订立合同的意思表示。"},
                     {"role": "user", "content": "要约可以撤回吗？"},
                     {"role": "assistant", "content": "可以，撤回通知应当在要约到达受要约人之前或者同时到达。"}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_session, tiny_paths):
    root = tmp_path_factory.mktemp("sft")
    lines = [
        json.dumps(GOOD, ensure_ascii=False).encode(),
        b'{"messages": [',                                                        # bad_json
        b'{"messages": [{"role": "user", "content": "\xff"}]}',                   # invalid_utf8
        b"",                                                                       # empty_record
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),   # no_assistant_turn
        json.dumps({"messages": [{"role": "bot", "content": "x"}]}).encode(),     # bad_messages
        json.dumps({"text": "no messages"}).encode(),                             # missing_field
        json.dumps({"messages": [{"role": "user", "content": "长"},
                                 {"role": "assistant", "content": "长" * 3000}]}, ensure_ascii=False).encode(),  # too_long
    ]
    (root / "user.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = validate_config({
        "kind": "data_sft", "name": "test_sft", "output_dir": str(root / "out"),
        "tokenizer": str(tiny_paths["tokenizer"]), "max_len": 512, "rows_per_shard": 150,
        "validation_fraction": 0.1, "test_fraction": 0.1,
        "stages": [
            {"name": "stage1_chat", "sources": [{"name": "chatterbot_zh"},
                                                {"name": "jsonl", "path": str(root / "user.jsonl"), "weight": 2}]},
            {"name": "stage2_domain", "epochs": 2, "sources": [{"name": "laws_qa", "max_examples": 400},
                                                               {"name": "insuranceqa_zh", "max_examples": 200}]},
        ],
    })
    summary = run_sft_data(cfg)
    out = Path(cfg.output_dir)
    return {"out": out, "summary": summary, "manifest": json.loads((out / "manifest.json").read_text()),
            "tok": load_tokenizer(str(tiny_paths["tokenizer"])), "jsonl": f"jsonl:{root / 'user.jsonl'}"}


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
    for stage in ("stage1_chat", "stage2_domain"):
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
    seen = {_norm(t) for st in ("stage1_chat", "stage2_domain")
            for r in _rows(out, st, "train") for t in _turns(r["input_ids"], tok)}
    qa = [json.loads(x) for st in ("stage1_chat", "stage2_domain")
          for x in (out / st / "test" / "qa.jsonl").read_text().splitlines()]
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
    assert [s["name"] for s in m["stages"]] == ["stage1_chat", "stage2_domain"]
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
    assert user["quarantined"] == {"bad_json": 1, "invalid_utf8": 1, "empty_record": 1, "no_assistant_turn": 1,
                                   "bad_messages": 1, "missing_field": 1, "too_long": 1}
    for counts in m["sources"].values():
        for name, c in counts.items():
            rest = c["docs_out"] + sum(c["filtered"].values()) + sum(c["quarantined"].values()) + c["exact_dups"]
            assert rest == c["docs_in"], name
    laws = m["sources"]["stage2_domain"]["laws_qa"]
    # the cap counts distinct well-formed examples, before rendering (too_long comes later)
    capped = laws["docs_in"] - 400 - laws["exact_dups"] - laws["quarantined"].get("missing_field", 0)
    assert laws["filtered"]["over_max_examples"] == capped
    records = (out / "quarantine" / "quarantine.jsonl").read_text().splitlines()
    assert len(records) == m["quarantine"]["records"] == sum(m["quarantine"]["by_reason"].values())
