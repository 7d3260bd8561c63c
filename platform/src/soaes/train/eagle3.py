"""Train an EAGLE-3 head for the target on on-policy distillation rows (plain PyTorch).

The rows are the distillation data (``data/train``: the target's own answers to domain
prompts). The frozen target runs online on each batch: its hidden states after the aux
layers are the head's input and its next-token distributions the teacher. The loss is the
project's forward KL (:func:`soaes.train.losses.forward_kl`) restricted to the draft
vocabulary, summed over ``ttt_steps`` unrolled draft steps (EAGLE-3's training-time test,
weights 0.8^(s-1)), so steps after the first learn from the head's own states as vLLM will
feed them. The head is small next to the target, so one process trains it; the target's
forward dominates each step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soaes.config.distill import Eagle3Config
from soaes.config.train import OptimSpec
from soaes.models.eagle3 import (
    default_aux_layers,
    draft_steps,
    head_config,
    init_head,
    read_config,
    save_head,
)
from soaes.train.ds_config import lr_multiplier
from soaes.train.losses import forward_kl

log = logging.getLogger(__name__)


def read_rows(data_dir: str | Path) -> list[dict[str, np.ndarray]]:
    """Distillation rows (``input_ids``, ``loss_mask``) of a parquet folder."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(data_dir), columns=["input_ids", "loss_mask"]).to_pylist()
    return [
        {"input_ids": np.asarray(r["input_ids"]), "loss_mask": np.asarray(r["loss_mask"])}
        for r in table
    ]


def draft_vocabulary(rows: list[dict], size: int | None, vocab: int, keep: list[int]) -> Any:
    """The ``size`` target ids most often generated in ``rows`` (plus ``keep``), sorted;
    None when ``size`` is None or covers the whole vocabulary."""
    if size is None or size >= vocab:
        return None
    counts = np.zeros(vocab, dtype=np.int64)
    for r in rows:
        ids, mask = r["input_ids"], r["loss_mask"].astype(bool)
        np.add.at(counts, ids[1:][mask[:-1]], 1)
    counts[[k for k in keep if 0 <= k < vocab]] = counts.max() + 1
    top = np.argsort(-counts, kind="stable")[:size]
    return torch.from_numpy(np.sort(top)).long()


def pad_batch(rows: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``loss_mask`` ``[B, T]``."""
    t = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), t), dtype=torch.long)
    lmask = torch.zeros((len(rows), t), dtype=torch.bool)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], attn[i, :n] = torch.from_numpy(r["input_ids"].astype(np.int64)), 1
        lmask[i, :n] = torch.from_numpy(r["loss_mask"].astype(bool))
    return ids, attn, lmask


def step_pairs(
    student: torch.Tensor,
    teacher: torch.Tensor,
    lmask: torch.Tensor,
    step: int,
    draft_ids: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits of draft step ``step`` at the positions that count.

    Every step at position p predicts token p+2, which the target's logits at p+1 predict;
    it counts where ``lmask[p+1]`` (a generated token follows) and its chain started inside
    the sequence (p >= step-1). The teacher is restricted to the draft vocabulary.
    """
    mask = torch.zeros_like(lmask)
    mask[:, :-1] = lmask[:, 1:]
    mask[:, : step - 1] = False
    s, te = student[:, :-1][mask[:, :-1]], teacher[:, 1:][mask[:, :-1]]
    return s, te if draft_ids is None else te[:, draft_ids]


def shifted_embeds(embeds: torch.Tensor) -> torch.Tensor:
    """Per position p, the embedding of token p+1 (zeros past the end)."""
    out = torch.zeros_like(embeds)
    out[:, :-1] = embeds[:, 1:]
    return out


def head_loss(head, target, batch, aux_layers, cfg: Eagle3Config, draft_ids) -> dict:
    """Weighted forward KL of ``cfg.ttt_steps`` draft steps and step-1 top-1 agreement."""
    ids, attn, lmask = batch
    with torch.no_grad():
        out = target(input_ids=ids, attention_mask=attn, output_hidden_states=True)
        aux = torch.cat([out.hidden_states[i] for i in aux_layers], -1)
        embeds = target.get_input_embeddings()(ids)
    positions = torch.arange(ids.shape[1])
    nexts = shifted_embeds(embeds)
    losses, agree = [], None
    for s, logits in enumerate(draft_steps(head, aux, nexts, positions, cfg.ttt_steps), 1):
        student, teacher = step_pairs(logits, out.logits, lmask & attn.bool(), s, draft_ids)
        losses.append(0.8 ** (s - 1) * forward_kl(student, teacher))
        if s == 1:
            agree = (student.argmax(-1) == teacher.argmax(-1)).float().mean()
    return {"loss": sum(losses), "step_losses": [x.item() for x in losses], "top1": agree}


def _fit(head, step_loss, rows: list[dict], cfg: Eagle3Config, pad: int) -> list[float]:
    """``cfg.steps`` AdamW steps on random batches of ``rows`` (warm-up, then ``cfg.schedule``);
    ``step_loss(batch)`` is :func:`head_loss` bound to the target. Returns the train losses."""
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = OptimSpec(
        lr=cfg.lr,
        schedule=cfg.schedule,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    losses, rng = [], np.random.default_rng(cfg.seed)
    for step in range(1, cfg.steps + 1):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_multiplier(step - 1, schedule, cfg.steps)
        pick = rng.choice(len(rows), size=min(cfg.batch_size, len(rows)), replace=False)
        r = step_loss(pad_batch([rows[i] for i in pick], pad))
        opt.zero_grad()
        r["loss"].backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        losses.append(r["loss"].item())
        if step % 10 == 0 or step == cfg.steps:
            log.info("eagle3 step %d loss %.3f steps %s", step, losses[-1], r["step_losses"])
    return losses


def train_eagle3(
    cfg: Eagle3Config, target_dir: str, data_dir: str | Path, out_dir: str | Path
) -> dict[str, Any]:
    """Train the head on ``data_dir/{train,eval}`` rows and export it to ``out_dir``.

    Returns:
        Steps, first/last train loss, held-out step-1 top-1 agreement before/after, paths.
    """
    from transformers import AutoModelForCausalLM

    torch.manual_seed(cfg.seed)
    tcfg = read_config(target_dir)
    aux_layers = cfg.aux_layers or default_aux_layers(tcfg["num_hidden_layers"])
    rows, held = read_rows(Path(data_dir) / "train"), read_rows(Path(data_dir) / "eval")
    eos = tcfg.get("eos_token_id")
    keep = eos if isinstance(eos, list) else [eos or 0]
    draft_ids = draft_vocabulary(rows, cfg.draft_vocab_size, tcfg["vocab_size"], keep)
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    hcfg = head_config(
        tcfg, aux_layers, len(draft_ids) if draft_ids is not None else tcfg["vocab_size"]
    )
    head = init_head(target, hcfg, draft_ids, cfg.seed).train()
    pad = int(tcfg.get("pad_token_id") or 0)
    held_batch = pad_batch(held[: cfg.batch_size], pad)

    def held_top1() -> float:
        with torch.no_grad():
            return float(head_loss(head, target, held_batch, aux_layers, cfg, draft_ids)["top1"])

    before, t0 = held_top1(), time.time()
    losses = _fit(
        head, lambda b: head_loss(head, target, b, aux_layers, cfg, draft_ids), rows, cfg, pad
    )
    summary = {
        "steps": cfg.steps,
        "train_seconds": time.time() - t0,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "heldout_top1_before": before,
        "heldout_top1_after": held_top1(),
        "aux_layers": aux_layers,
        "draft_vocab_size": hcfg["draft_vocab_size"],
        "path": str(save_head(head.eval(), out_dir, target_dir, draft_ids)),
    }
    (Path(out_dir) / "eagle3_train.json").write_text(json.dumps(summary, indent=2))
    return summary
