"""EAGLE-3 draft head for a target: the PyTorch module, its config, and the export vLLM loads.

EAGLE-3 (Li et al. 2025) drafts from the target's own hidden states: the states after a low,
a middle and a high layer are concatenated and projected by ``fc`` to one hidden vector
``g``; one decoder layer reads ``[norm(embed(next token)), norm(g)]`` (so its q/k/v
projections take ``2·hidden`` inputs), then the final norm and an output layer over a
(possibly reduced) draft vocabulary. Later draft steps feed the layer's own pre-norm output
back in place of ``g``. The token embeddings are the target's (vLLM shares them; they are
not exported).

The export follows vLLM 0.32's ``llama_eagle3.Eagle3LlamaForCausalLM`` loader (the
speculators / SpecForge layout): ``config.json`` with ``architectures:
["LlamaForCausalLMEagle3"]``, ``draft_vocab_size``, ``target_hidden_size`` and
``eagle_config.eagle_aux_hidden_state_layer_ids``; weights ``fc.weight``, ``midlayer.*``,
``norm.weight``, ``lm_head.weight`` and, with a reduced vocabulary, ``d2t`` (draft id ->
target id offset: ``target = draft + d2t[draft]``) and ``t2d`` (target id in the draft
vocabulary). Aux layer id L is the input of target layer L (HF ``hidden_states[L]``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soaes.models.draft import copy_tokenizer

ARCHITECTURE = "LlamaForCausalLMEagle3"


def default_aux_layers(num_layers: int) -> list[int]:
    """Low, middle and high aux layer ids: vLLM's default (2, n//2, n-3), or (1, n//2, n-1)
    for targets too shallow for it (fewer than 8 layers)."""
    if num_layers < 3:
        raise ValueError(f"EAGLE-3 needs a target with >= 3 layers, got {num_layers}")
    if num_layers >= 8:
        return [2, num_layers // 2, num_layers - 3]
    return [1, num_layers // 2, num_layers - 1]


def head_config(target_cfg: dict, aux_layers: list[int], draft_vocab_size: int) -> dict:
    """The head's ``config.json`` for a target config (Llama-style decoder layer)."""
    hidden = target_cfg["hidden_size"]
    heads = target_cfg["num_attention_heads"]
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "hidden_size": hidden,
        "target_hidden_size": hidden,
        "intermediate_size": target_cfg["intermediate_size"],
        "num_attention_heads": heads,
        "num_key_value_heads": target_cfg.get("num_key_value_heads", heads),
        "head_dim": target_cfg.get("head_dim") or hidden // heads,
        "num_hidden_layers": 1,
        "hidden_act": target_cfg.get("hidden_act", "silu"),
        "rms_norm_eps": target_cfg.get("rms_norm_eps", 1e-6),
        "rope_parameters": target_cfg.get("rope_parameters")
        or {"rope_type": "default", "rope_theta": target_cfg.get("rope_theta", 10000.0)},
        "max_position_embeddings": target_cfg.get("max_position_embeddings", 2048),
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "vocab_size": target_cfg["vocab_size"],
        "draft_vocab_size": draft_vocab_size,
        "bos_token_id": target_cfg.get("bos_token_id"),
        "eos_token_id": target_cfg.get("eos_token_id"),
        "torch_dtype": "float32",
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(aux_layers)},
    }


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Llama's)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def _rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding (HF Llama's rotate-half layout) of ``x [B, H, T, D]``."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = positions.float()[..., None] * inv  # [T, D/2] or [B, T, D/2]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Eagle3Head(nn.Module):
    """The trainable part of an EAGLE-3 draft (names match the export)."""

    def __init__(self, cfg: dict):
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        n_aux = len(cfg["eagle_config"]["eagle_aux_hidden_state_layer_ids"])
        self.cfg = cfg
        self.n_heads, self.n_kv, self.head_dim = (
            cfg["num_attention_heads"],
            cfg["num_key_value_heads"],
            cfg["head_dim"],
        )
        self.theta = float(cfg["rope_parameters"].get("rope_theta", 10000.0))
        self.fc = nn.Linear(n_aux * h, h, bias=False)
        self.midlayer = nn.Module()
        m = self.midlayer
        m.input_layernorm, m.hidden_norm = RMSNorm(h, eps), RMSNorm(h, eps)
        m.post_attention_layernorm = RMSNorm(h, eps)
        m.self_attn = nn.Module()
        m.self_attn.q_proj = nn.Linear(2 * h, self.n_heads * self.head_dim, bias=False)
        m.self_attn.k_proj = nn.Linear(2 * h, self.n_kv * self.head_dim, bias=False)
        m.self_attn.v_proj = nn.Linear(2 * h, self.n_kv * self.head_dim, bias=False)
        m.self_attn.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)
        m.mlp = nn.Module()
        m.mlp.gate_proj = nn.Linear(h, cfg["intermediate_size"], bias=False)
        m.mlp.up_proj = nn.Linear(h, cfg["intermediate_size"], bias=False)
        m.mlp.down_proj = nn.Linear(cfg["intermediate_size"], h, bias=False)
        self.norm = RMSNorm(h, eps)
        self.lm_head = nn.Linear(h, cfg["draft_vocab_size"], bias=False)

    def qkv(
        self, embeds: torch.Tensor, hidden: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Layer input, residual and rotated q, k, v ``[B, heads, T, D]`` of one draft step."""
        m, (b, t, _) = self.midlayer, embeds.shape
        x = torch.cat([m.input_layernorm(embeds), m.hidden_norm(hidden)], -1)
        a = m.self_attn
        q = a.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = a.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = a.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        rep = self.n_heads // self.n_kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        return hidden, _rope(q, positions, self.theta), _rope(k, positions, self.theta), v

    def finish(self, attn: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Output projection, MLP and final norm: ``(logits, pre-norm hidden)``."""
        m, (b, _, t, _) = self.midlayer, attn.shape
        h = m.self_attn.o_proj(attn.transpose(1, 2).reshape(b, t, -1)) + residual
        x = m.post_attention_layernorm(h)
        h = m.mlp.down_proj(nn.functional.silu(m.mlp.gate_proj(x)) * m.mlp.up_proj(x)) + h
        return self.lm_head(self.norm(h)), h


def unrolled_attention(
    q: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]
) -> torch.Tensor:
    """Attention of draft step s = len(keys) as vLLM runs it, for every position at once.

    The step-s query at position p sees step 1's keys at positions <= p-s+1 (computed from
    the target's states) and step t's key at position p-s+t for t = 2..s (the chain of its
    own earlier steps), i.e. EAGLE-3's training-time test. Positions with no valid step-1
    key (p < s-1) attend to what they have.
    """
    s, t = len(keys), q.shape[2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    pos = torch.arange(t)
    scores = [(q @ keys[0].transpose(-1, -2)) * scale]
    scores[0] = scores[0].masked_fill(pos[None, :] > pos[:, None] - s + 1, float("-inf"))
    shifted_v = []
    for step in range(2, s + 1):
        shift = s - step  # key of step `step` sits `shift` positions before the query
        k = torch.roll(keys[step - 1], shift, dims=2)
        v = torch.roll(values[step - 1], shift, dims=2)
        diag = (q * k).sum(-1, keepdim=True) * scale
        scores.append(diag.masked_fill((pos < shift)[:, None], float("-inf")))
        shifted_v.append(v)
    weights = torch.softmax(torch.cat(scores, -1), -1).nan_to_num(0.0)
    out = weights[..., :t] @ values[0]
    for i, v in enumerate(shifted_v):
        out = out + weights[..., t + i : t + i + 1] * v
    return out


def draft_steps(
    head: Eagle3Head,
    aux: torch.Tensor,
    next_embeds: torch.Tensor,
    positions: torch.Tensor,
    steps: int,
) -> list[torch.Tensor]:
    """Logits of draft steps 1..``steps`` at every position (training-time test).

    Indexed by the position p a step runs at, every step reads the embedding of token p+1
    and predicts token p+2; step 1 reads the target's states at p, step s > 1 the pre-norm
    output of step s-1 at p-1 (its own chain, which started at p-s+1).

    Args:
        head: the head.
        aux: ``[B, T, n_aux*H]`` target aux states at positions 0..T-1.
        next_embeds: ``[B, T, H]``: at each position p, the embedding of token p+1.
        positions: ``[T]`` positions.
        steps: draft steps to unroll.

    Returns:
        Per step, ``[B, T, draft_vocab]`` logits (step s is meaningful from p = s-1 on).
    """
    hidden = head.fc(aux)
    keys, values, logits = [], [], []
    for _ in range(steps):
        residual, q, k, v = head.qkv(next_embeds, hidden, positions)
        keys.append(k)
        values.append(v)
        out, prenorm = head.finish(unrolled_attention(q, keys, values), residual)
        logits.append(out)
        hidden = torch.cat([torch.zeros_like(prenorm[:, :1]), prenorm[:, :-1]], 1)
    return logits


def save_head(
    head: Eagle3Head, out_dir: str | Path, target_dir: str | Path, draft_ids: torch.Tensor | None
) -> Path:
    """Write the head in vLLM's ``eagle3`` layout (module docstring) with the target's
    tokenizer; ``draft_ids`` (sorted target ids of the draft vocabulary) adds d2t/t2d."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in head.state_dict().items()}
    if draft_ids is not None:
        vocab = head.cfg["vocab_size"]
        ids = draft_ids.long()
        tensors["d2t"] = (ids - torch.arange(len(ids))).contiguous()
        t2d = torch.zeros(vocab, dtype=torch.bool)
        t2d[ids] = True
        tensors["t2d"] = t2d
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(head.cfg, indent=2), encoding="utf-8")
    copy_tokenizer(target_dir, out)
    return out


def load_head(head_dir: str | Path) -> Eagle3Head:
    """An exported head (``config.json`` + ``model.safetensors``; d2t/t2d left out)."""
    from safetensors.torch import load_file

    cfg = json.loads((Path(head_dir) / "config.json").read_text(encoding="utf-8"))
    head = Eagle3Head(cfg)
    state = load_file(str(Path(head_dir) / "model.safetensors"))
    head.load_state_dict({k: v for k, v in state.items() if k not in ("d2t", "t2d")})
    return head


def init_head(target: Any, cfg: dict, draft_ids: torch.Tensor | None, seed: int = 0) -> Eagle3Head:
    """A head whose output layer and final norm start from the target's (rows of the draft
    vocabulary), other weights random (seeded)."""
    torch.manual_seed(seed)
    head = Eagle3Head(cfg)
    with torch.no_grad():
        w = target.get_output_embeddings().weight.float()
        head.lm_head.weight.copy_(w if draft_ids is None else w[draft_ids])
        head.norm.weight.copy_(target.model.norm.weight.float())
    return head


def read_config(target_dir: str | Path) -> dict:
    """The target's ``config.json`` (its text part for multimodal configs)."""
    cfg = json.loads((Path(target_dir) / "config.json").read_text(encoding="utf-8"))
    return cfg.get("text_config", cfg)
