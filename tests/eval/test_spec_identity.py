"""Greedy identity of vLLM speculative decoding with drafts that disagree often (tiny preset):
an undistilled random draft (``draft_model``) and an untrained EAGLE-3 head exported in the
layout vLLM's ``eagle3`` method loads. Each checks >= 1,000 generated tokens against the
target alone and asserts the rejection path ran (acceptance < 50%)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from soaes.config.distill import EngineConfig, PromptsConfig
from soaes.data.prompts import load_prompts
from soaes.eval.acceptance import acceptance_stats, read_counters
from soaes.eval.spec_steps import spec_llm, timed_greedy
from soaes.inference.engine import close_llm
from soaes.models.eagle3 import head_config, init_head, read_config, save_head

ENGINE = EngineConfig(max_model_len=512)
NUM_PROMPTS, MAX_TOKENS = 16, 64  # 1,024 generated tokens per configuration


def _greedy(target: str, spec: dict | None, prompts: list[dict]) -> dict:
    llm = spec_llm(target, ENGINE, spec)
    try:
        before = read_counters(llm)
        tokens = []
        for i in range(0, len(prompts), 8):  # served batch 8
            tokens += timed_greedy(llm, prompts[i : i + 8], MAX_TOKENS)[0]
        stats = acceptance_stats(read_counters(llm) - before) if spec else {}
        return {"tokens": tokens, **stats}
    finally:
        close_llm(llm)


@pytest.fixture(scope="module")
def tiny_setup(tiny_paths):
    target = str(tiny_paths["target"])
    tok = AutoTokenizer.from_pretrained(target)
    texts = load_prompts(PromptsConfig(split="eval", num_prompts=NUM_PROMPTS), tok)
    prompts = [{"prompt_token_ids": tok(t, add_special_tokens=False).input_ids} for t in texts]
    return target, prompts, _greedy(target, None, prompts)


@pytest.fixture(scope="module")
def eagle3_head(tiny_paths, tmp_path_factory):
    """An untrained EAGLE-3 head for the tiny target, with a reduced 512-token vocabulary."""
    target_dir = tiny_paths["target"]
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    tcfg = read_config(target_dir)
    ids = torch.arange(0, tcfg["vocab_size"], 4)[:512]
    head = init_head(target, head_config(tcfg, [1, 2, 3], len(ids)), ids, seed=1)
    return str(save_head(head, tmp_path_factory.mktemp("eagle3") / "head", target_dir, ids))


def _check(base: dict, spec: dict) -> None:
    n = sum(map(len, base["tokens"]))
    assert n >= 1000 and all(len(t) == MAX_TOKENS for t in base["tokens"])
    assert spec["drafts"] > 0 and spec["acceptance_rate"] < 0.5  # rejections happened
    assert spec["tokens"] == base["tokens"]


@pytest.mark.heavy
def test_eagle3_export_loads_and_decodes_identically(tiny_setup, eagle3_head):
    target, prompts, base = tiny_setup
    spec = {"method": "eagle3", "model": eagle3_head, "num_speculative_tokens": 3}
    _check(base, _greedy(target, spec, prompts))


@pytest.mark.heavy
def test_disagreeing_draft_model_keeps_outputs(tiny_setup, tiny_paths):
    target, prompts, base = tiny_setup
    spec = {"method": "draft_model", "model": str(tiny_paths["draft"]), "num_speculative_tokens": 3}
    _check(base, _greedy(target, spec, prompts))
