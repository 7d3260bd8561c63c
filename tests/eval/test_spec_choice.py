"""Per-step measurement of every candidate with real vLLM engines (tiny preset): a separate
draft (draft_model) and an EAGLE-3 head (eagle3), their rows, the choice and the files the
Serve app and the report read."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import AutoModelForCausalLM

from soaes.config.distill import AcceptanceConfig, EngineConfig, PromptsConfig
from soaes.eval.spec_choice import candidates_of, measure_run
from soaes.models.eagle3 import head_config, init_head, read_config, save_head


@pytest.fixture(scope="module")
def run_dir(tiny_paths, tmp_path_factory):
    """A distillation run folder holding a draft (hf/) and an untrained EAGLE-3 head."""
    run = tmp_path_factory.mktemp("distill")
    shutil.copytree(tiny_paths["draft"], run / "hf")
    target = AutoModelForCausalLM.from_pretrained(tiny_paths["target"])
    tcfg = read_config(tiny_paths["target"])
    head = init_head(target, head_config(tcfg, [1, 2, 3], tcfg["vocab_size"]), None)
    save_head(head, run / "eagle3", tiny_paths["target"], None)
    return run


@pytest.mark.heavy
def test_every_candidate_measured_and_winner_written(run_dir, tiny_paths):
    cfg = AcceptanceConfig(
        prompts=PromptsConfig(split="eval", num_prompts=4),
        max_tokens=16,
        num_speculative_tokens=[2],
        repetitions=2,
        served_batch=4,
        single_stream_prompts=2,
        engine=EngineConfig(max_model_len=512),
    )
    cands = candidates_of(run_dir)
    assert {n: m for n, (m, _) in cands.items()} == {"distilled": "draft_model", "eagle3": "eagle3"}
    result = measure_run(str(tiny_paths["target"]), cands, cfg, run_dir)
    rows = {r["name"]: r for r in result["candidates"]}
    assert set(rows) == {"distilled", "eagle3"}
    for r in rows.values():
        assert r["k"] == 2 and r["identical_outputs"] and r["tokens_checked"] == (2 + 4) * 17
        for b in ("batch1", "batch4"):
            assert r[b]["speedup"]["n"] == 2 and r[b]["speedup"]["median"] > 0
            assert r[b]["c_step"]["median"] > 0 and 0 <= r[b]["acceptance_rate"] <= 1
    t = result["target_steps"]
    assert t["batch1"]["step_s_spread"]["median"] > 0 and "verify" in t
    spec = json.loads((run_dir / "spec_decode.json").read_text())
    assert spec["method"] == result["chosen"]["method"] and spec["num_speculative_tokens"] == 2
    legacy = json.loads((run_dir / "acceptance_distilled.json").read_text())
    assert legacy["rows"][0]["outputs_identical"] and legacy["best_k"] == 2
    body = json.loads((run_dir / "acceptance.json").read_text())
    assert body["served"] == result["chosen"]["name"] and len(body["candidates"]) == 2
