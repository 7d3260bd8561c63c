"""The `eval` pipeline end to end on the tiny preset: real Ray tasks, vLLM, transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soaes.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.heavy
def test_eval_pipeline_tiny(tmp_path, ray_session, tiny_paths):
    from soaes.eval.loglik import load_causal_lm
    from soaes.eval.retention import load_mmlu, score_mmlu, stratified_subset
    from soaes.eval.runner import run_eval

    cfg = load_config(
        ROOT / "pipelines" / "eval_tiny.yaml",
        [
            f"output_dir={tmp_path}",
            "qa.0.limit=3",
            "generation.max_new_tokens=8",
            "perplexity.0.max_docs=4",
            "perplexity.1.max_docs=8",
            "perplexity.2.max_docs=2",
            "roles.cpt_before=target",
            "roles.cpt_after=draft",
            "retention.n_boot=200",
        ],
    )
    summary = run_eval(cfg)
    assert summary["models"] == ["target", "draft"] and summary["reused"] == []
    res = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    for name in ("target", "draft"):
        m = res["models"][name]
        assert m["qa"]["laws"]["n_items"] == 3 and m["mmlu"]["n"] == 57
        assert set(m["perplexity"]) == {"domain_laws", "general_zh", "general_en"}
        preds = (tmp_path / "models" / name / "qa" / "laws" / "predictions.jsonl").read_text()
        assert len(preds.splitlines()) == 3
        assert len((tmp_path / "models" / name / "mmlu.jsonl").read_text().splitlines()) == 57
    # The pipeline's MMLU numbers equal a direct in-process scoring of the same subset.
    model, tok = load_causal_lm(str(tiny_paths["target"]))
    direct = score_mmlu(model, tok, stratified_subset(load_mmlu(), 1, seed=0))
    assert res["models"]["target"]["mmlu"]["accuracy"] == pytest.approx(
        sum(r["correct"] for r in direct) / 57
    )
    ret = res["cpt"]["mmlu_accuracy"]
    acc = {n: res["models"][n]["mmlu"]["accuracy"] for n in ("target", "draft")}
    assert ret["ratio"] == pytest.approx(acc["draft"] / acc["target"])
    assert ret["low"] <= ret["ratio"] <= ret["high"]
    assert res["retention"]["models"]["draft"]["mmlu_accuracy"] == ret
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Continual pre-training (CPT)" in md and "### General-capability retention" in md
    assert (tmp_path / "report.html").is_file() and (tmp_path / "config.resolved.yaml").is_file()
    # A second run with unchanged inputs reuses both models' results, numbers identical.
    again = run_eval(cfg)
    assert again["reused"] == ["target", "draft"]
    res2 = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert res2["models"] == res["models"] and res2["cpt"] == res["cpt"]
