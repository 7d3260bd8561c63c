"""EAGLE-3 head: unrolled (training-time-test) attention equals step-by-step drafting, export
layout, and a short training run that raises the head's agreement with the tiny target."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from soaes.models.eagle3 import (
    Eagle3Head,
    default_aux_layers,
    draft_steps,
    head_config,
    save_head,
    unrolled_attention,
)

CFG = {
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 50,
    "rms_norm_eps": 1e-6,
}


def _head(draft_vocab: int = 50) -> Eagle3Head:
    torch.manual_seed(0)
    return Eagle3Head(head_config(CFG, [1, 2, 3], draft_vocab)).eval()


def test_default_aux_layers():
    assert default_aux_layers(30) == [2, 15, 27]  # vLLM's default for SmolLM2-135M
    assert default_aux_layers(4) == [1, 2, 3]
    with pytest.raises(ValueError, match=">= 3 layers"):
        default_aux_layers(2)


def test_first_step_is_causal_attention():
    q, k, v = (torch.randn(1, 2, 5, 4) for _ in range(3))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(unrolled_attention(q, [k], [v]), want, atol=1e-6)


def _sequential(head, aux, embeds, n, steps):
    """vLLM's order: step 1 over positions 0..n-1, then step s alone at position n+s-2,
    attending to step 1's keys <= n-1 and the chain's own earlier keys."""
    pos = torch.arange(n)
    res, q, k1, v1 = head.qkv(embeds[:, 1 : n + 1], head.fc(aux[:, :n]), pos)
    att = torch.nn.functional.scaled_dot_product_attention(q, k1, v1, is_causal=True)
    logits, pre = head.finish(att, res)
    out, keys, vals, hidden = [logits[:, -1]], [k1], [v1], pre[:, -1:]
    for s in range(2, steps + 1):
        p = n + s - 2
        res, q, k, v = head.qkv(embeds[:, p + 1 : p + 2], hidden, torch.tensor([p]))
        keys.append(k)
        vals.append(v)
        kk, vv = torch.cat(keys, 2), torch.cat(vals, 2)
        logits, pre = head.finish(torch.nn.functional.scaled_dot_product_attention(q, kk, vv), res)
        out.append(logits[:, -1])
        hidden = pre
    return out


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_unrolled_steps_equal_sequential_drafting(steps):
    head, t = _head(), 9
    aux, embeds = torch.randn(1, t, 96), torch.randn(1, t + steps, 32)
    parallel = draft_steps(head, aux, embeds[:, 1 : t + 1], torch.arange(t), steps)
    for n in (3, 6):
        seq = _sequential(head, aux, embeds, n, steps)
        for s in range(1, steps + 1):  # step s of the chain sits at position n-1+(s-1)
            got = parallel[s - 1][:, n - 1 + s - 1]
            assert torch.allclose(got, seq[s - 1], atol=1e-4), (n, s)


def test_export_layout(tmp_path, tiny_paths):
    head = _head(draft_vocab=4)
    ids = torch.tensor([2, 7, 9, 30])
    head.cfg["vocab_size"] = 50
    out = save_head(head, tmp_path / "h", tiny_paths["target"], ids)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLMEagle3"] and cfg["draft_vocab_size"] == 4
    assert cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 2, 3]
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
        assert (ids + f.get_tensor("d2t") * 0 == ids).all()
        assert (torch.arange(4) + f.get_tensor("d2t") == ids).all()  # target = draft + d2t
        assert f.get_tensor("t2d").nonzero().flatten().tolist() == ids.tolist()
    assert {"fc.weight", "midlayer.self_attn.q_proj.weight", "midlayer.hidden_norm.weight"} <= names
    assert {"norm.weight", "lm_head.weight"} <= names and not any("embed" in n for n in names)
    assert (out / "tokenizer.json").is_file()


def test_training_raises_agreement(tmp_path, tiny_paths):
    from transformers import AutoModelForCausalLM

    from soaes.config.distill import Eagle3Config
    from soaes.train.eagle3 import train_eagle3

    target = AutoModelForCausalLM.from_pretrained(tiny_paths["target"]).eval()
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(24):  # the target's own greedy continuations: on-policy rows
        ids = torch.tensor([rng.integers(3, 2000, 6).tolist()])
        full = target.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=0)[0]
        rows.append({"input_ids": full.tolist(), "loss_mask": [0] * 5 + [1] * 24 + [0]})
    import pyarrow as pa
    import pyarrow.parquet as pq

    for part, chunk in (("train", rows[:16]), ("eval", rows[16:])):
        (tmp_path / part).mkdir()
        pq.write_table(pa.Table.from_pylist(chunk), tmp_path / part / "rows.parquet")
    cfg = Eagle3Config(steps=40, batch_size=8, lr=3e-3, draft_vocab_size=512, ttt_steps=2)
    s = train_eagle3(cfg, str(tiny_paths["target"]), tmp_path, tmp_path / "head")
    assert s["loss_last"] < s["loss_first"]
    assert s["heldout_top1_after"] > s["heldout_top1_before"]
    assert s["draft_vocab_size"] == 512 and s["aux_layers"] == [1, 2, 3]
