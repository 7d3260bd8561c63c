"""Model presets: tiny target/draft share a vocabulary; the production preset validates."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from soaes.config.model import PresetSpec
from soaes.models.presets import PRESETS, resolve


def test_tiny_target_and_draft_share_vocab(tiny_paths):
    tok = AutoTokenizer.from_pretrained(tiny_paths["tokenizer"])
    t_cfg = AutoConfig.from_pretrained(tiny_paths["target"])
    d_cfg = AutoConfig.from_pretrained(tiny_paths["draft"])
    assert t_cfg.vocab_size == d_cfg.vocab_size == len(tok)
    assert d_cfg.num_hidden_layers < t_cfg.num_hidden_layers
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    # Chinese and English round-trip through the byte-level BPE.
    text = "企业国有资产 belongs to the state."
    assert tok.decode(tok(text).input_ids) == text
    model = AutoModelForCausalLM.from_pretrained(tiny_paths["target"])
    out = model(torch.tensor([tok(text).input_ids]))
    assert out.logits.shape[-1] == len(tok)


def test_resolve_passes_through_unknown_handles():
    assert resolve("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve("/models/x") == "/models/x"


def test_resolve_makes_local_folders_absolute(tmp_path, monkeypatch):
    # Ray Train workers run in their own working directory: a relative checkpoint path
    # resolved there would be taken for a hub id.
    (tmp_path / "runs" / "cpt" / "hf").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve("runs/cpt/hf") == str(tmp_path / "runs" / "cpt" / "hf")


def test_production_preset_is_gpu_and_not_runnable_here():
    p = PRESETS["qwen2.5-72b"]
    assert p.accelerator == "gpu" and not p.runnable_here and p.dtype == "bfloat16"
    with pytest.raises(ValidationError, match="tensor_parallel_size"):
        PresetSpec(**{**p.model_dump(), "tensor_parallel_size": 0})


def test_smollm2_asset_loads_as_safetensors():
    path = resolve("smollm2/base")
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1] :])
