"""The `eval` pipeline end to end: real Ray tasks, vLLM, transformers.

The run is the tiny recipe's ``eval`` stage (session fixture ``tiny_recipe``): five real
checkpoints (base, CPT, base+SFT, CPT+SFT, single-stage SFT), the SFT pipeline's held-out
law Q&A, MMLU and three perplexity sets.
"""

from __future__ import annotations

import json

import pytest

from soaes.config.loader import load_config

MODELS = ("base", "cpt", "base_sft", "cpt_sft", "single_stage")


@pytest.mark.heavy
@pytest.mark.timeout(1500)
def test_eval_pipeline_tiny(tiny_recipe):
    from soaes.eval.loglik import load_causal_lm
    from soaes.eval.retention import load_mmlu, score_mmlu, stratified_subset
    from soaes.eval.runner import run_eval

    out = tiny_recipe.stage("eval")
    cfg = load_config(out / "config.resolved.yaml")
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert tuple(res["models"]) == MODELS
    n_qa = res["models"]["base"]["qa"]["domain"]["n_items"]
    assert 0 < n_qa <= cfg.qa[0].limit
    for name in MODELS:
        m = res["models"][name]
        assert m["qa"]["domain"]["n_items"] == n_qa and m["mmlu"]["n"] == 57
        assert set(m["perplexity"]) == {p.name for p in cfg.perplexity}
        preds = (out / "models" / name / "qa" / "domain" / "predictions.jsonl").read_text()
        assert len(preds.splitlines()) == n_qa
        assert len((out / "models" / name / "mmlu.jsonl").read_text().splitlines()) == 57
    # The pipeline's MMLU numbers equal a direct in-process scoring of the same subset.
    base = next(m for m in cfg.models if m.name == "base")
    model, tok = load_causal_lm(base.path)
    direct = score_mmlu(
        model, tok, stratified_subset(load_mmlu(), cfg.mmlu.n_per_subject, cfg.mmlu.seed)
    )
    assert res["models"]["base"]["mmlu"]["accuracy"] == pytest.approx(
        sum(r["correct"] for r in direct) / 57
    )
    ret = res["cpt"]["mmlu_accuracy"]
    acc = {n: res["models"][n]["mmlu"]["accuracy"] for n in ("base", "cpt")}
    assert ret["ratio"] == pytest.approx(acc["cpt"] / acc["base"])
    assert ret["low"] <= ret["ratio"] <= ret["high"]
    assert res["retention"]["models"]["cpt"]["mmlu_accuracy"] == ret
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Continual pre-training (CPT)" in md and "### General-capability retention" in md
    assert (out / "report.html").is_file()
    # A second run with unchanged inputs reuses every model's results, numbers identical.
    again = run_eval(cfg)
    assert again["reused"] == list(MODELS)
    res2 = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res2["models"] == res["models"] and res2["cpt"] == res["cpt"]
