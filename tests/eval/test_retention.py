"""MMLU loading and subset, option log-likelihood scoring against a manual computation,
perplexity and retention intervals, with the tiny preset's target (random weights: the
numbers are real, the answers are noise)."""

from __future__ import annotations

import math

import pytest
import torch

from soaes.eval.loglik import load_causal_lm
from soaes.eval.retention import (
    load_mmlu,
    mmlu_pairs,
    perplexity_items,
    ppl_summary,
    score_mmlu,
    stratified_subset,
)
from soaes.eval.stats import cluster_bootstrap_ratio


@pytest.fixture(scope="module")
def mmlu_rows():
    return load_mmlu()


@pytest.fixture(scope="module")
def tiny_lm(tiny_paths):
    return load_causal_lm(str(tiny_paths["target"]))


def test_mmlu_loader_drops_the_two_header_rows(mmlu_rows):
    assert len(mmlu_rows) == 14_044 - 2
    assert {r["answer"] for r in mmlu_rows} == {0, 1, 2, 3}
    assert len({r["topic"] for r in mmlu_rows}) == 57
    assert all(len(r["choices"]) == 4 for r in mmlu_rows)


def test_stratified_subset_is_fixed_and_balanced(mmlu_rows):
    a = stratified_subset(mmlu_rows, 3, seed=0)
    assert [r["id"] for r in a] == [r["id"] for r in stratified_subset(mmlu_rows, 3, seed=0)]
    assert [r["id"] for r in a] == [r["id"] for r in stratified_subset(mmlu_rows[::-1], 3, seed=0)]
    assert len(a) == 57 * 3
    per_topic = {}
    for r in a:
        per_topic[r["topic"]] = per_topic.get(r["topic"], 0) + 1
    assert set(per_topic.values()) == {3}
    assert {r["id"] for r in stratified_subset(mmlu_rows, 3, seed=1)} != {r["id"] for r in a}


def _manual_logprob(model, tok, context: str, continuation: str) -> float:
    """Unbatched reference: log p(continuation | context) token by token from raw logits."""
    ctx = tok(context)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


@pytest.mark.parametrize("scoring", ["option", "letter"])
def test_option_loglik_matches_manual_and_picks_the_argmax(tiny_lm, mmlu_rows, scoring):
    model, tok = tiny_lm
    items = stratified_subset(mmlu_rows, 1, seed=0)[:6]
    # Batched (padded, length-sorted) scoring must equal the unbatched reference.
    scored = score_mmlu(model, tok, items, scoring=scoring, batch_size=5)
    for it, res in zip(items, scored, strict=True):
        manual = [_manual_logprob(model, tok, c, x) for c, x in mmlu_pairs(it, scoring)]
        assert res["logprobs"] == pytest.approx(manual, abs=1e-3)
        assert res["pred"] == max(range(4), key=lambda j: manual[j])
    # A constructed item whose key is the option this model likes best is answered right.
    it = dict(items[0])
    manual = [_manual_logprob(model, tok, c, x) for c, x in mmlu_pairs(it, scoring)]
    it["answer"] = max(range(4), key=lambda j: manual[j])
    res = score_mmlu(model, tok, [it], scoring=scoring)[0]
    z = sum(math.exp(x) for x in manual)
    assert res["correct"] == 1
    assert res["p_correct"] == pytest.approx(math.exp(manual[it["answer"]]) / z, rel=1e-3)


def test_retention_and_perplexity_intervals(tiny_lm, mmlu_rows):
    model, tok = tiny_lm
    items = stratified_subset(mmlu_rows, 1, seed=0)
    before = score_mmlu(model, tok, items, batch_size=8)
    # "After": the same model with one option's verdict flipped on a few items.
    after = [dict(r, correct=1 - r["correct"]) if i % 7 == 0 else r for i, r in enumerate(before)]
    ret = cluster_bootstrap_ratio(
        [r["correct"] for r in before], [r["correct"] for r in after], n_boot=500
    )
    acc_b = sum(r["correct"] for r in before) / len(before)
    acc_a = sum(r["correct"] for r in after) / len(after)
    assert ret["ratio"] == pytest.approx(acc_a / acc_b)
    assert ret["low"] <= ret["ratio"] <= ret["high"] and ret["n"] == 57
    same = [r["correct"] for r in before]
    assert cluster_bootstrap_ratio(same, same, n_boot=200)["ratio"] == 1.0

    texts = [
        "中华人民共和国公司法规定了公司的设立和组织机构。",
        "To be, or not to be: that is the question.",
    ]
    docs = perplexity_items(model, tok, texts=texts, max_len=64)
    summary = ppl_summary(docs)
    assert summary["n_docs"] == 2 and summary["n_tokens"] == sum(d["tokens"] for d in docs)
    # A random 2,051-token model is near uniform: perplexity in the vocabulary's range.
    assert 100 < summary["ppl"] < 20_000
    nll, tokens = [d["nll"] for d in docs], [d["tokens"] for d in docs]
    same = cluster_bootstrap_ratio(nll, nll, weights=tokens, transform="exp_mean", n_boot=200)
    assert same["ratio"] == pytest.approx(1.0) and same["low"] <= 1.0 <= same["high"]


def test_perplexity_on_packed_validation_blocks(tiny_lm, tmp_path):
    """data_cpt's validation format: input_ids blocks with n_pad trailing pads cut off."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from soaes.eval.retention import validation_blocks

    model, tok = tiny_lm
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    doc = tok("第一条 为了规范公司的组织和行为，制定本法。")["input_ids"]
    rows = [doc + [eos] + doc[:5], doc + [eos] + [pad] * 5]
    for i, r in enumerate(rows):
        pq.write_table(
            pa.table({"input_ids": [r], "position_ids": [list(range(len(r)))], "n_pad": [5 * i]}),
            tmp_path / f"part-0000{i}.parquet",
        )
    blocks = validation_blocks(tmp_path, max_docs=8)
    assert blocks == [rows[0], rows[1][:-5]]
    items = perplexity_items(model, tok, blocks=blocks, max_len=256)
    assert [d["tokens"] for d in items] == [len(b) - 1 for b in blocks]
    with pytest.raises(ValueError, match="no column 'ids'"):
        validation_blocks(tmp_path, 8, ids_column="ids")
