"""Q&A files: malformed lines reported, the rest scored; `soaes eval --qa` end to end (vLLM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soaes.eval.qa import laws_qa_sample, load_qa, render_prompts, score_items


def write_qa_file(path: Path, items: list[dict]) -> dict[int, str]:
    """Valid items interleaved with malformed lines; returns {line number: expected reason}."""
    bad_lines = [
        (b"{not json", "invalid JSON"),
        (b'{"question": "q only"}', "missing field 'answer'"),
        (b'["a", "list"]', "expected a JSON object"),
        (b'{"question": "", "answer": "x"}', "field 'question' must be a non-empty string"),
        ('{"question": "\u6cd5", "answer": "'.encode() + b"\xff\xfe" + b'"}', "invalid UTF-8"),
    ]
    lines, expected = [], {}
    for i, it in enumerate(items):
        lines.append(json.dumps(it, ensure_ascii=False).encode())
        if i < len(bad_lines):
            lines.append(bad_lines[i][0])
            expected[len(lines)] = bad_lines[i][1]
    lines.append(b"")  # a blank line is neither an item nor an error
    path.write_bytes(b"\n".join(lines) + b"\n")
    return expected


def test_laws_sample_and_malformed_lines(tmp_path):
    items = laws_qa_sample(6, seed=0)
    assert items == laws_qa_sample(6, seed=0) and len(items) == 6
    assert all(
        it["question"].startswith("《") and it["question"].endswith("规定了什么？") for it in items
    )
    expected = write_qa_file(tmp_path / "qa.jsonl", [{**it, "topic": "law"} for it in items])
    good, bad = load_qa(tmp_path / "qa.jsonl")
    assert [g["question"] for g in good] == [it["question"] for it in items]
    assert all(g["topic"] == "law" for g in good)  # extra fields are kept
    assert {b["line"]: b["reason"] for b in bad}.keys() == expected.keys()
    for b in bad:
        assert b["reason"].startswith(expected[b["line"]])
    assert len(load_qa(tmp_path / "qa.jsonl", limit=2)[0]) == 2


def test_score_items_and_prompts(tiny_paths):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_paths["tokenizer"])
    p = render_prompts(tok, ["《公司法》第一条规定了什么？"], system_prompt="你是法律助手。")[0]
    assert p.startswith("<|im_start|>system\n你是法律助手。") and p.endswith(
        "<|im_start|>assistant\n"
    )
    items = [
        {"question": "q1", "answer": "我爱北京天安门"},
        {"question": "q2", "answer": "我爱北京"},
    ]
    gens = [
        {"prediction": "我爱北京", "output_tokens": 3},
        {"prediction": "我爱北京", "output_tokens": 3},
    ]
    per_item, agg = score_items(items, gens)
    assert per_item[1]["scores"]["jieba"]["rouge-1"] == pytest.approx(100.0)
    assert agg["jieba"]["rouge-1"] == pytest.approx((600 / 7 + 100) / 2)
    assert agg["sacrebleu"]["n"] == 2


@pytest.mark.heavy
def test_soaes_eval_cli_reports_malformed_and_scores_rest(tmp_path, tiny_paths):
    items = laws_qa_sample(4, seed=1)
    expected = write_qa_file(tmp_path / "qa.jsonl", items)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "soaes.cli",
        "eval",
        "--qa",
        str(tmp_path / "qa.jsonl"),
        "--model",
        str(tiny_paths["target"]),
        "--out",
        str(out),
        "--max-new-tokens",
        "16",
        "--max-model-len",
        "512",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in expected:
        assert f"qa.jsonl:{line}: skipped:" in proc.stderr
    assert "4 items scored, 4 malformed lines skipped" in proc.stdout
    per_item = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["source_id"] for p in per_item] == [it["source_id"] for it in items]
    assert all(
        0 < p["output_tokens"] <= 16 and set(p["scores"]) == {"jieba", "sacrebleu"}
        for p in per_item
    )
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n_items"] == 4 and scores["n_malformed"] == 4
    mean_r1 = sum(p["scores"]["jieba"]["rouge-1"] for p in per_item) / 4
    assert scores["jieba"]["rouge-1"] == pytest.approx(mean_r1)
    assert len((out / "malformed.jsonl").read_text().splitlines()) == 4
