"""Log-likelihood scoring with transformers on CPU: continuation log-probs and sequence NLL.

Batched (right padding, sorted by length so a batch wastes little), under
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


def token_logprobs(
    model, seqs: Sequence[Sequence[int]], pad_id: int, keep_last: int | None = None
) -> list[torch.Tensor]:
    """Log-prob of every token given its prefix, for one batch of sequences.

    Args:
        model: a causal LM.
        seqs: token ids (each at least 2 tokens).
        pad_id: padding id.
        keep_last: only the last ``keep_last`` tokens of each sequence are needed. The batch
            is then left-padded and the output layer runs on those positions only
            (``logits_to_keep``): the vocabulary projection and log-softmax over every
            context position would otherwise dominate for option scoring.

    Returns:
        One float32 tensor per sequence: entry t is log p(seq[t+1] | seq[:t+1]), for all
        ``len(seq) - 1`` tokens, or for the last ``min(keep_last, len(seq) - 1)``.
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(width - len(s), width) if keep_last else slice(0, len(s))
        ids[i, cols] = torch.tensor(s, dtype=torch.long)
        mask[i, cols] = 1
    kwargs = {}
    if keep_last:
        # Left padding: positions count real tokens only; logits only for the tail.
        kwargs = {
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "logits_to_keep": min(keep_last, width - 1) + 1,
        }
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, **kwargs).logits[:, :-1].float()
        targets = ids[:, width - logits.shape[1] :]
        # gather - logsumexp: avoids materialising a second vocab-sized log_softmax tensor.
        picked = logits.gather(-1, targets[..., None]).squeeze(-1)
        lp = picked - torch.logsumexp(logits, dim=-1)
    if keep_last:
        return [lp[i, -min(keep_last, len(s) - 1) :].clone() for i, s in enumerate(seqs)]
    return [lp[i, : len(s) - 1].clone() for i, s in enumerate(seqs)]


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_pair(tokenizer, context: str, continuation: str, max_len: int) -> tuple[list[int], int]:
    """Token ids of context + continuation (encoded separately) and the continuation's length.

    The context is cut from the left when the pair exceeds ``max_len`` tokens.
    """
    ctx = tokenizer(context, add_special_tokens=True)["input_ids"]
    cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError(f"continuation {continuation!r} encodes to no tokens")
    keep = max(1, max_len - len(cont))
    return list(ctx[-keep:]) + list(cont), len(cont)


def continuation_logprobs(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 8, max_len: int = 1024
) -> list[float]:
    """Sum of log p(continuation tokens | context) for each ``(context, continuation)`` pair."""
    encoded = [encode_pair(tokenizer, c, x, max_len) for c, x in pairs]
    out = [0.0] * len(encoded)
    for idx in _batches([len(e[0]) for e in encoded], batch_size):
        keep = max(encoded[i][1] for i in idx)
        lps = token_logprobs(model, [encoded[i][0] for i in idx], tokenizer.pad_token_id, keep)
        for i, lp in zip(idx, lps, strict=True):
            out[i] = float(lp[-encoded[i][1] :].sum())
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
