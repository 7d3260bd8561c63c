"""Log-likelihood scoring with transformers on CPU: continuation log-probs and sequence NLL.

Batched (sorted by length so a batch wastes little padding), under
``torch.inference_mode``. Used by MMLU option scoring and by held-out perplexity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)


def load_causal_lm(
    path: str, tokenizer: str | None = None, dtype: str = "float32", trust_remote_code: bool = False
):
    """Load a model handle or folder with transformers for scoring.

    Args:
        path: preset handle (``tiny/target``), folder or hub id.
        tokenizer: tokenizer handle/folder when it differs from the model's.
        dtype: weights dtype (float32 is the fast one on CPU).
        trust_remote_code: allow custom modelling code (off unless configured).

    Returns:
        ``(model, tokenizer)``, the model in eval mode; the tokenizer has a pad token.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soaes.models.presets import resolve

    folder = resolve(path)
    tok = AutoTokenizer.from_pretrained(
        resolve(tokenizer) if tokenizer else folder, trust_remote_code=trust_remote_code
    )
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    return model.eval(), tok


def token_logprobs(model, seqs: Sequence[Sequence[int]], pad_id: int) -> list[torch.Tensor]:
    """Log-prob of every token given its prefix, for one batch of sequences.

    Returns:
        One float32 tensor per sequence, of length ``len(seq) - 1``: entry t is
        log p(seq[t+1] | seq[:t+1]).
    """
    ids, mask = _pad(seqs, pad_id, left=False)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        lp = _picked_logprobs(logits, ids[:, 1:])
    return [lp[i, : len(s) - 1].clone() for i, s in enumerate(seqs)]


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, ...]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = torch.tensor(list(s), dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def _picked_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per position: gather - logsumexp (no vocab-sized log_softmax copy)."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def continuation_logprobs(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 8, max_len: int = 1024
) -> list[float]:
    """Sum of log p(continuation tokens | context) for each ``(context, continuation)`` pair.

    Context and continuation are encoded separately (the context with the tokenizer's
    special tokens). Pairs sharing a context (an MMLU question's four options) run the
    context once: its KV cache is copied to each continuation, which is about 3x less work
    than four full sequences when the question is much longer than its options. A context
    is cut from the left when context + continuation exceed ``max_len`` tokens.
    """
    groups: dict[str, list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(ctx, []).append(i)
    conts = [tokenizer(x, add_special_tokens=False)["input_ids"] for _, x in pairs]
    if any(not c for c in conts):
        raise ValueError("a continuation encodes to no tokens")
    ctxs = []
    for ctx, idx in groups.items():
        ids = tokenizer(ctx, add_special_tokens=True)["input_ids"]
        ctxs.append((ids[-max(1, max_len - max(len(conts[i]) for i in idx)) :], idx))
    out = [0.0] * len(pairs)
    for chunk in _batches([len(c[0]) for c in ctxs], batch_size):
        group = [ctxs[k] for k in chunk]
        sums = _shared_context_batch(
            model,
            [g[0] for g in group],
            [[conts[i] for i in g[1]] for g in group],
            tokenizer.pad_token_id,
        )
        for (_, idx), vals in zip(group, sums, strict=True):
            for i, v in zip(idx, vals, strict=True):
                out[i] = v
    return out


def _shared_context_batch(
    model, ctxs: list[list[int]], conts: list[list[list[int]]], pad_id: int
) -> list[list[float]]:
    """One forward over the left-padded contexts, one over all their continuations."""
    ctx_ids, ctx_mask = _pad(ctxs, pad_id, left=True)
    rows = torch.tensor([r for r, cs in enumerate(conts) for _ in cs])
    flat = [c for cs in conts for c in cs]
    cont_ids, cont_mask = _pad(flat, pad_id, left=False)
    ctx_len = ctx_mask.sum(-1)
    with torch.inference_mode():
        first = model(
            input_ids=ctx_ids,
            attention_mask=ctx_mask,
            use_cache=True,
            position_ids=(ctx_mask.cumsum(-1) - 1).clamp(min=0),
            logits_to_keep=1,
        )
        cache = first.past_key_values
        cache.reorder_cache(rows)  # one copy of each context's cache per continuation
        pos = ctx_len[rows][:, None] + torch.arange(cont_ids.shape[1])[None, :]
        logits = model(
            input_ids=cont_ids,
            attention_mask=torch.cat([ctx_mask[rows], cont_mask], 1),
            position_ids=pos,
            past_key_values=cache,
        ).logits
        # Token 0 is predicted by the context's last position, token t by continuation t-1.
        logits = torch.cat([first.logits[rows], logits[:, :-1]], dim=1)
        lp = _picked_logprobs(logits, cont_ids)
    sums = [float(lp[j, : len(c)].sum()) for j, c in enumerate(flat)]
    out, k = [], 0
    for cs in conts:
        out.append(sums[k : k + len(cs)])
        k += len(cs)
    return out


def sequence_nll(
    model, seqs: Sequence[Sequence[int]], pad_id: int, batch_size: int = 4
) -> list[tuple[float, int]]:
    """Per sequence: (sum of token NLL over positions 1.., number of scored tokens)."""
    out: list[tuple[float, int]] = [(0.0, 0)] * len(seqs)
    for idx in _batches([len(s) for s in seqs], batch_size):
        lps = token_logprobs(model, [seqs[i] for i in idx], pad_id)
        for i, lp in zip(idx, lps, strict=True):
            out[i] = (float(-lp.sum()), int(lp.numel()))
    return out
