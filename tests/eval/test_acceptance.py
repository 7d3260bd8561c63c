"""Acceptance maths, and vLLM speculative decoding of the tiny target with a byte-copy draft."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoTokenizer

from soaes.config.distill import AcceptanceConfig, PromptsConfig
from soaes.config.inference import EngineConfig
from soaes.data.prompts import load_prompts
from soaes.eval.acceptance import (
    SpecCounters,
    acceptance_stats,
    expected_length,
    fit_alpha,
    run_engine,
    theoretical_speedup,
    write_spec_decode,
)


def test_counter_difference_and_stats():
    before = SpecCounters(10, 30, 12, (6, 4, 2))
    after = SpecCounters(30, 90, 42, (18, 14, 10, 0))
    s = acceptance_stats(after - before)
    assert (s["drafts"], s["draft_tokens"], s["accepted_tokens"]) == (20, 60, 30)
    assert s["acceptance_rate"] == 0.5
    assert s["mean_acceptance_length"] == 2.5
    assert s["per_position"] == [0.6, 0.5, 0.4, 0.0]
    with pytest.raises(ValueError, match="no speculative steps"):
        acceptance_stats(SpecCounters())


def test_speedup_formula():
    # (1 - a^(k+1)) / ((1 - a)(k c + 1)) at a=0.8, k=4, c=0.1 (Leviathan et al., table values)
    assert theoretical_speedup(0.8, 4, 0.1) == pytest.approx((1 - 0.8**5) / (0.2 * 1.4))
    assert theoretical_speedup(1.0, 3, 0.0) == 4.0
    assert theoretical_speedup(0.0, 3, 0.5) == pytest.approx(1 / 2.5)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.55, 0.9, 1.0])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_fit_alpha_inverts_expected_length(alpha, k):
    assert fit_alpha(expected_length(alpha, k), k) == pytest.approx(alpha, abs=1e-9)


def test_spec_decode_json(tmp_path):
    summary = {
        "target": "t",
        "draft": "d",
        "c": 0.3,
        "best_k": 2,
        "rows": [
            {"k": 1, "acceptance_rate": 0.5, "mean_acceptance_length": 1.5},
            {
                "k": 2,
                "acceptance_rate": 0.4,
                "mean_acceptance_length": 1.8,
                "speedup_measured": 1.1,
            },
        ],
    }
    body = json.loads(write_spec_decode(tmp_path, summary).read_text())
    assert body["num_speculative_tokens"] == 2
    assert body["speculative_config"] == {
        "method": "draft_model",
        "model": "d",
        "num_speculative_tokens": 2,
    }
    assert body["mean_acceptance_length"] == 1.8 and body["speedup_measured"] == 1.1


@pytest.fixture(scope="module")
def copy_run(tiny_paths, tmp_path_factory):
    """Target alone, then target + a byte copy of itself as draft (k=3), same prompts."""
    target = str(tiny_paths["target"])
    copy = tmp_path_factory.mktemp("copy") / "draft"
    shutil.copytree(target, copy)
    cfg = AcceptanceConfig(
        prompts=PromptsConfig(split="eval", num_prompts=6),
        max_tokens=24,
        engine=EngineConfig(max_model_len=512),
    )
    prompts = load_prompts(cfg.prompts, AutoTokenizer.from_pretrained(target))
    base = run_engine(target, cfg.engine, prompts, cfg.max_tokens)
    spec = run_engine(target, cfg.engine, prompts, cfg.max_tokens, draft=str(copy), k=3)
    return base, spec


@pytest.mark.heavy
def test_byte_copy_draft_accepts_everything(copy_run):
    _, spec = copy_run
    assert spec["drafts"] > 0 and spec["draft_tokens"] == 3 * spec["drafts"]
    assert spec["accepted_tokens"] == spec["draft_tokens"]
    assert spec["acceptance_rate"] == 1.0 and spec["mean_acceptance_length"] == 4.0
    assert spec["per_position"] == [1.0, 1.0, 1.0]


@pytest.mark.heavy
def test_greedy_outputs_identical_with_and_without_speculation(copy_run):
    base, spec = copy_run
    assert len(base["tokens"]) == 6 and all(base["tokens"])
    assert spec["tokens"] == base["tokens"]
