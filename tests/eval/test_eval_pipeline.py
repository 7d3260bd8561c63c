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
    from soaes.report.pipeline import run_eval
    from soaes.report.write import read_results

    out = tiny_recipe.stage("eval")
    cfg = load_config(out / "config.resolved.yaml")
    res = read_results(out / "results.json")
    assert tuple(res.models) == (*MODELS, "echo")
    qa_set = cfg.qa[0].name  # the recipe's first eval set (data_sft's eval_sets/*.jsonl)
    n_qa = res.models["base"].qa[qa_set].n_items
    assert 0 < n_qa <= cfg.qa[0].limit
    for name in MODELS:
        m = res.models[name]
        assert m.qa[qa_set].n_items == n_qa and m.mmlu.n == 57
        assert set(m.perplexity) == {p.name for p in cfg.perplexity}
        d = m.qa[qa_set].diagnostics
        assert d.n == n_qa and d.max_new_tokens == cfg.generation.max_new_tokens
        assert 0 <= d.share_truncated <= 1 and d.mean_tokens <= cfg.generation.max_new_tokens
        preds = (out / "predictions" / f"{name}__{qa_set}.jsonl").read_text(encoding="utf-8")
        lines = [json.loads(x) for x in preds.splitlines()]
        assert len(lines) == n_qa and {"id", "cluster", "finish_reason", "scores"} <= set(lines[0])
        assert len((out / "models" / name / "mmlu.jsonl").read_text().splitlines()) == 57
    # The pipeline's MMLU numbers equal a direct in-process scoring of the same subset.
    base = next(m for m in cfg.models if m.name == "base")
    model, tok = load_causal_lm(base.path)
    direct = score_mmlu(
        model, tok, stratified_subset(load_mmlu(), cfg.mmlu.n_per_subject, cfg.mmlu.seed)
    )
    assert res.models["base"].mmlu.accuracy == pytest.approx(sum(r["correct"] for r in direct) / 57)
    acc = next(c for c in res.cpt_retention.cells if c.metric == "MMLU accuracy")
    assert acc.ratio == pytest.approx(
        res.models["cpt"].mmlu.accuracy / res.models["base"].mmlu.accuracy
    )
    assert "higher" not in acc.verdict
    (domain,) = [d for d in res.domain if d.name == qa_set]
    assert {r.model for r in domain.rows} == {*MODELS, "echo"}
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Continual pre-training (CPT)" in md and "### General-capability retention" in md
    assert "| echo | echo |" in md and "Parity (" in md
    assert (out / "report.html").is_file()
    # A second run with unchanged inputs reuses every model's results, numbers identical.
    again = run_eval(cfg)
    assert again["reused"] == list(MODELS)
    res2 = read_results(out / "results.json")
    assert res2.models == res.models
    assert res2.cpt_retention.model_dump_json() == res.cpt_retention.model_dump_json()
