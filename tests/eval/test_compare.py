"""Paired comparisons and the results dict of the eval pipeline, from hand-made model results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from soaes.config.loader import validate_config
from soaes.eval.compare import build_results, qa_ratio_block, retention_block
from soaes.eval.report import write_report


def model_result(correct: list[int], nll: list[float], r1: list[float]) -> dict:
    """A model's result as evaluate_model returns it (per-item data included)."""
    conv = lambda v: {"rouge-1": v, "rouge-2": v / 2, "rouge-l": v, "bleu-4": v / 4}  # noqa: E731
    n = len(r1)
    mean = sum(r1) / n
    return {
        "path": "x",
        "qa": {
            "laws": {
                "n_items": n,
                "n_malformed": 0,
                "jieba": conv(mean),
                "sacrebleu": conv(mean),
                "per_item": [{"jieba": conv(v), "sacrebleu": conv(v)} for v in r1],
            }
        },
        "mmlu": {
            "n": len(correct),
            "accuracy": sum(correct) / len(correct),
            "p_correct": 0.3,
            "per_item": [
                {"id": i, "correct": c, "p_correct": 0.2 + 0.1 * c} for i, c in enumerate(correct)
            ],
        },
        "perplexity": {
            "general_zh": {
                "group": "general",
                "ppl": 1.0,
                "per_item": [{"nll": x, "tokens": 10} for x in nll],
            }
        },
    }


def test_retention_and_qa_ratios():
    before = model_result([1, 1, 0, 1, 0, 1, 1, 0], [20.0] * 8, [10, 20, 30, 40])
    after = model_result([1, 0, 0, 1, 0, 1, 1, 0], [10.0] * 8, [11, 22, 33, 44])
    ret = retention_block(before, after, n_boot=300)
    # accuracy 4/8 over 5/8; every NLL halves: ppl e^2 -> e^1, ratio e^-1.
    assert ret["mmlu_accuracy"]["ratio"] == pytest.approx(0.8)
    assert ret["mmlu_accuracy"]["low"] <= 0.8 <= ret["mmlu_accuracy"]["high"]
    assert ret["perplexity"]["general_zh"]["ratio"] == pytest.approx(math.exp(-1))
    qa = qa_ratio_block(before, after, "laws", n_boot=300)
    # Every item scores 10% higher: the ratio and every resample's ratio is exactly 1.1.
    assert qa["jieba"]["rouge-1"]["ratio"] == pytest.approx(1.1)
    assert qa["jieba"]["rouge-1"]["low"] == pytest.approx(1.1) == qa["jieba"]["rouge-1"]["high"]
    assert (
        qa["sacrebleu"]["bleu-4"]["ratio"] == pytest.approx(1.1)
        and "low" not in qa["sacrebleu"]["bleu-4"]
    )
    assert qa_ratio_block(before, after, "missing") is None


def test_build_results_fills_every_section(tmp_path):
    serving = Path(__file__).parent / "serving_bench.json"  # `soaes bench serve --out`
    spec = tmp_path / "spec_decode.json"
    spec.write_text(
        json.dumps(
            {
                "num_speculative_tokens": 2,
                "c": 0.3,
                "rows": [
                    {
                        "k": 2,
                        "acceptance_rate": 0.5,
                        "mean_acceptance_length": 2.0,
                        "per_position": [0.6, 0.4],
                        "speedup_measured": 1.2,
                        "speedup_theoretical": 1.4,
                        "outputs_identical": True,
                    }
                ],
            }
        )
    )
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(json.dumps({"step": s, "loss": 3.0 / (s + 1)}) + "\n" for s in range(5))
    )
    cfg = validate_config(
        {
            "kind": "eval",
            "name": "t",
            "output_dir": str(tmp_path),
            "models": [{"name": n, "path": "p"} for n in ("base", "cpt", "base_sft", "cpt_sft")],
            "qa": [{"name": "laws", "path": "qa.jsonl"}],
            "roles": {
                "cpt_before": "base",
                "cpt_after": "cpt",
                "base_sft": "base_sft",
                "cpt_sft": "cpt_sft",
                "single_stage": "base_sft",
                "progressive": "cpt_sft",
            },
            "report": {
                "speculative": str(spec),
                "speculative_undistilled": str(tmp_path / "none.json"),
                "serving": str(serving),
                "loss_curves": {"cpt": str(metrics)},
            },
        }
    )
    per_model = {
        "base": model_result([1, 0, 1, 1], [20.0] * 4, [10, 20]),
        "cpt": model_result([1, 0, 1, 1], [18.0] * 4, [10, 20]),
        "base_sft": model_result([1, 0, 1, 0], [20.0] * 4, [10, 20]),
        "cpt_sft": model_result([1, 0, 1, 0], [20.0] * 4, [12, 23]),
    }
    res = build_results(cfg, per_model)
    assert res["retention"]["baseline"] == "base" and set(res["retention"]["models"]) == {
        "cpt",
        "base_sft",
        "cpt_sft",
    }
    assert res["cpt"]["mmlu_accuracy"]["ratio"] == 1.0
    assert res["cpt"]["downstream"]["jieba"]["rouge-1"]["ratio"] == pytest.approx(35 / 30)
    assert res["progressive"]["after"] == "cpt_sft"
    assert "undistilled" not in res["speculative"]  # missing file: left out, not a crash
    assert res["serving"]["single_stream"]["speedup_spec_vs_plain_http"] == 1.2
    assert res["loss_curves"]["cpt"]["loss"][0] == [0, 3.0]
    assert all("per_item" not in json.dumps(m) for m in res["models"].values())
    md = write_report(res, tmp_path / "r")["md"].read_text(encoding="utf-8")
    assert "Not run" not in md and "1.17x" in md and "(k=2)" in md
