"""Draft construction: pruning keeps exactly the chosen layers; vocabularies are checked."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from soaes.config.distill import DraftConfig
from soaes.models.draft import VocabMismatchError, build_draft, check_vocab, prune_draft


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_prune_keeps_exactly_the_chosen_layers(tiny_paths, tmp_path):
    target = tiny_paths["target"]
    draft = build_draft(
        DraftConfig(method="prune", keep_layers=[3, 1]), str(target), tmp_path / "d"
    )
    t, d = _weights(target), _weights(draft)
    for new, old in enumerate([3, 1]):
        layer_keys = [k for k in t if k.startswith(f"model.layers.{old}.")]
        assert layer_keys
        for k in layer_keys:
            assert torch.equal(d[k.replace(f"layers.{old}.", f"layers.{new}.")], t[k])
    for k in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(d[k], t[k])
    assert not any(k.startswith(("model.layers.2.", "model.layers.3.")) for k in d)
    cfg = json.loads((draft / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and len(cfg["layer_types"]) == 2
    assert json.loads((draft / "draft.json").read_text())["keep_layers"] == [3, 1]
    assert check_vocab(draft, target) == cfg["vocab_size"]


def test_prune_all_layers_reproduces_the_target(tiny_paths, tmp_path):
    target = tiny_paths["target"]
    draft = prune_draft(target, tmp_path / "d", keep_layers=[0, 1, 2, 3])
    ids = torch.tensor([[5, 17, 300, 42, 7]])
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(target).eval()(ids).logits
        b = AutoModelForCausalLM.from_pretrained(draft).eval()(ids).logits
    assert torch.equal(a, b)


def test_fresh_narrow_draft_starts_from_target_embeddings(tiny_paths, tmp_path):
    target = tiny_paths["target"]
    cfg = DraftConfig(
        method="fresh",
        num_layers=1,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
    )
    draft = build_draft(cfg, str(target), tmp_path / "d")
    model = AutoModelForCausalLM.from_pretrained(draft)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 64
    emb = model.get_input_embeddings().weight
    t_emb = _weights(target)["model.embed_tokens.weight"]
    assert emb.shape == (t_emb.shape[0], 64)
    # Projected onto the target's principal directions: pairwise token similarities are kept
    # far better than by chance.
    idx = torch.arange(0, t_emb.shape[0], 7)
    sim_t = torch.nn.functional.normalize(t_emb[idx], dim=-1)
    sim_d = torch.nn.functional.normalize(emb[idx].detach(), dim=-1)
    corr = torch.corrcoef(torch.stack([(sim_t @ sim_t.T).flatten(), (sim_d @ sim_d.T).flatten()]))
    assert corr[0, 1] > 0.5
    assert check_vocab(draft, target) == t_emb.shape[0]


def test_vocab_mismatch_is_a_clear_error(tiny_paths, tmp_path):
    target = tiny_paths["target"]
    other = tmp_path / "other"
    shutil.copytree(tiny_paths["draft"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["vocab_size"] += 64
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VocabMismatchError, match="must share the target's vocabulary"):
        build_draft(DraftConfig(method="pretrained", path=str(other)), str(target), tmp_path / "x")
    cfg["vocab_size"] -= 64
    (other / "config.json").write_text(json.dumps(cfg))
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = (next(k for k, v in vocab.items() if v == i) for i in (300, 301))
    vocab[a], vocab[b] = 301, 300  # same tokens, two ids swapped
    (other / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(VocabMismatchError, match="tokenizer differs"):
        check_vocab(other, target)


def test_draft_config_validation():
    with pytest.raises(ValidationError, match="keep_layers or num_layers"):
        DraftConfig(method="prune")
    with pytest.raises(ValidationError, match="path is required"):
        DraftConfig(method="pretrained")
    with pytest.raises(ValidationError, match="only apply to method 'fresh'"):
        DraftConfig(method="prune", num_layers=2, hidden_size=64)
    assert DraftConfig(method="prune", num_layers=3).layers_to_keep() == [0, 1, 2]


def test_prune_rejects_bad_layer_lists(tiny_paths, tmp_path):
    for keep in ([0, 0], [4], []):
        with pytest.raises(ValueError, match="distinct indices in \\[0, 4\\)"):
            prune_draft(tiny_paths["target"], tmp_path / "d", keep)
