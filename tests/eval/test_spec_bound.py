"""Per-step cost model and candidate rows on constructed timings (pure, no vLLM)."""

from __future__ import annotations

import pytest

from soaes.config.distill import AcceptanceConfig, PromptsConfig
from soaes.eval.spec_bound import (
    cost_ratio,
    decode_step_s,
    paired_ratios,
    spec_bound,
    spread,
    verify_ratio,
)
from soaes.eval.spec_choice import (
    c_from_runs,
    candidate_row,
    choose,
    legacy_summary,
    spec_decode_body,
)
from soaes.eval.spec_steps import verify_prompts


def test_decode_step_removes_prefill():
    # prefill 0.5 s + N steps of 20 ms vs prefill 0.5 s + 0 steps: 20 ms per step
    assert decode_step_s(0.5 + 64 * 0.02, 0.5, 64) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        decode_step_s(1.0, 0.5, 0)


def test_verify_ratio_and_cost_ratio():
    # one-token call 30 ms, (k+1)-token call 42 ms: v(3) = 20 ms + 12 ms = 1.6 steps of 20 ms
    assert verify_ratio(0.042, 0.030, 0.020, 3) == pytest.approx(1.6)
    assert verify_ratio(0.5, 0.1, 0.02, 0) == 1.0
    assert cost_ratio(0.0071, 0.0199) == pytest.approx(0.3568, abs=1e-4)
    with pytest.raises(ValueError):
        cost_ratio(0.01, 0.0)


def test_bound():
    # E tokens per spec step costing k·c + v_k target steps
    assert spec_bound(2.5, 2, 0.36, 1.0) == pytest.approx(2.5 / 1.72)
    assert spec_bound(3.0, 2, 0.0, 1.0) == 3.0  # free draft and verification: E
    # the brief's case: a = 0.566, k = 2 -> E = 1 + a + a^2; c = 0.36, free verification
    e = 1 + 0.566 + 0.566**2
    assert spec_bound(e, 2, 0.36, 1.0) == pytest.approx(1.097, abs=1e-3)
    with pytest.raises(ValueError):
        spec_bound(2.0, 1, -1.0, 0.5)


def test_spread_and_pairs():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert paired_ratios([2.0, 4.0], [1.0, 2.0]) == [2.0, 2.0]
    with pytest.raises(ValueError, match="unpaired"):
        paired_ratios([1.0], [1.0, 2.0])


def test_verify_prompts_cut_to_whole_blocks():
    seqs = [list(range(300)), list(range(100)), list(range(133))]
    out = verify_prompts(seqs, block=128, max_k=4)
    assert [len(s) for s in out] == [256 + 5, 128 + 5, 128 + 5]
    assert out[1][100:] == out[1][:33]  # too short: repeated end to end


def _run(step_s: dict, tokens: dict, accepted: float | None = None, k: int = 2) -> dict:
    run = {"tokens": tokens}
    for b, s in step_s.items():
        run[f"batch{b}"] = {"step_s": s, "step_s_spread": spread(s)}
        if accepted is not None:
            run[f"batch{b}"]["acceptance"] = {
                "acceptance_rate": accepted,
                "mean_acceptance_length": 1 + k * accepted,
                "per_position": [accepted] * k,
            }
    return run


def test_candidate_row_from_constructed_timings():
    toks = {1: [[1, 2, 3]], 8: [[4, 5, 6]] * 8}
    target = _run({1: [0.020, 0.022, 0.021], 8: [0.040, 0.040, 0.044]}, toks)
    target["verify"] = {f"batch{b}": {"v_k": {2: spread([1.5, 1.5, 1.5])}} for b in (1, 8)}
    draft = _run({1: [0.007, 0.0077, 0.007], 8: [0.010, 0.010, 0.011]}, toks)
    spec = _run({1: [0.010, 0.011, 0.0105], 8: [0.040, 0.040, 0.044]}, toks, accepted=0.75)
    row = candidate_row(
        "distilled", "draft_model", "/d", 2, spec, target, c_from_runs(draft, target)
    )
    assert row["identical_outputs"] and row["tokens_checked"] == 3 + 24
    b1 = row["batch1"]
    assert b1["c_step"]["median"] == pytest.approx(0.35)
    assert b1["mean_acceptance_length"] == 2.5
    assert b1["bound"] == pytest.approx(2.5 / (2 * 0.35 + 1.5))
    assert b1["speedup"]["median"] == pytest.approx(2.0) and b1["speedup"]["n"] == 3
    assert b1["share_of_bound"] == pytest.approx(2.0 / b1["bound"])
    assert row["batch8"]["speedup"]["median"] == pytest.approx(1.0)
    assert {k: row[k] for k in ("c_step", "v_k", "speedup_serve_batch1")} == {
        "c_step": pytest.approx(0.35),
        "v_k": 1.5,
        "speedup_serve_batch1": None,  # only `bench spec --serve` measures it
    }
    assert row["bound"] == b1["bound"] and row["mean_acceptance_length"] == 2.5
    assert row["speedup_offline_batch1"] == pytest.approx(2.0)
    assert row["speedup_offline_batch8"] == pytest.approx(1.0)
    bad = candidate_row(
        "eagle3", "eagle3", "/e", 2, _run(_fast_steps(), {1: [[9]], 8: toks[8]}, 0.75), target, None
    )
    assert not bad["identical_outputs"] and bad["batch1"]["bound"] is None  # no c measured
    result = {"target": "/t", "candidates": [row, bad], "chosen": choose([row, bad])}
    assert result["chosen"]["name"] == "distilled"  # the faster one changed outputs
    body = spec_decode_body(result)
    assert body["speculative_config"] == {
        "method": "draft_model",
        "model": "/d",
        "num_speculative_tokens": 2,
    }
    cfg = AcceptanceConfig(prompts=PromptsConfig(split="eval"))
    legacy = legacy_summary(result, "distilled", cfg)
    assert legacy["best_k"] == 2 and legacy["rows"][0]["speedup_measured"] == pytest.approx(2.0)


def _fast_steps() -> dict:
    return {1: [0.005, 0.005, 0.005], 8: [0.02, 0.02, 0.02]}


def test_serve_speedup_lands_on_the_chosen_row_only():
    from soaes.bench.spec import with_serve

    rows = [{"name": "distilled", "k": k, "speedup_serve_batch1": None} for k in (1, 2)]
    result = {"candidates": rows, "chosen": {"name": "distilled", "k": 2}}
    single = {"speedup_spec_vs_plain_http": 1.21, "prompts": 8}
    with_serve(result, single)
    assert [r["speedup_serve_batch1"] for r in rows] == [None, 1.21]
    assert result["chosen"]["speedup_serve_batch1"] == 1.21
    assert result["serve_single_stream"] is single
