"""Pure-torch distillation losses between a student (draft) and a teacher (target).

Every loss compares, at each token position, the teacher's next-token distribution ``p``
with the student's ``q`` and averages over the positions selected by ``mask``:

* :func:`forward_kl`  KL(p || q): mass-covering; the classic distillation loss.
* :func:`reverse_kl`  KL(q || p): mode-seeking.
* :func:`jsd`         JSD(β) = β·KL(p || m) + (1-β)·KL(q || m), m = β·p + (1-β)·q.
* :func:`tvd`         ½·Σ|p - q|. For greedy-free speculative sampling the expected
  acceptance rate of one drafted token is exactly ``1 - TVD`` (Leviathan et al. 2023),
  so TVD is the loss DistillSpec aligns with acceptance.

All take logits of shape ``[..., V]``, a temperature (both distributions are softened by
the same ``T``; the losses are *not* rescaled by T², so each value keeps its plain
meaning) and a boolean ``mask`` of shape ``[...]`` (True = count this position). The
teacher may be reduced to its top-k tokens, either here (``top_k``) or offline
(:func:`topk_teacher` stores ``(log-probs, ids)``, as vLLM's ``logprobs`` do): both
distributions then become k+1 buckets, the teacher's top-k tokens and "all the rest"
(:func:`with_rest`, :func:`gather_student`). :func:`distillation_loss` dispatches by name and optionally mixes in
cross-entropy on labels. Modelled on torchtune's ``ForwardKLLoss``, but as exact
divergences: every loss is 0 when the two distributions are identical.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
LossName = Literal["forward_kl", "reverse_kl", "jsd", "tvd"]


def _masked_mean(per_token: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_token`` over positions where ``mask`` is True (0 when none are)."""
    if mask is None:
        return per_token.mean()
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp_min(1.0)


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # fp32 log-softmax: bf16 logits lose the small probabilities that KL depends on.
    return F.log_softmax(logits.float() / temperature, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-position KL(p || q) from log-probabilities; 0·log 0 terms count as 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Forward KL(p_teacher || q_student), averaged over masked positions.

    Args:
        student_logits: ``[..., V]`` logits of the draft.
        teacher_logits: ``[..., V]`` logits of the target (no gradient needed).
        mask: ``[...]`` bool, positions that count; None counts all.
        temperature: softening temperature applied to both.

    Returns:
        A scalar tensor.
    """
    log_q = _log_probs(student_logits, temperature)
    log_p = _log_probs(teacher_logits, temperature)
    return _masked_mean(_kl(log_p, log_q), mask)


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Reverse KL(q_student || p_teacher), averaged over masked positions (see forward_kl)."""
    log_q = _log_probs(student_logits, temperature)
    log_p = _log_probs(teacher_logits, temperature)
    return _masked_mean(_kl(log_q, log_p), mask)


def jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence JSD(β) between teacher p and student q.

    ``β·KL(p || m) + (1-β)·KL(q || m)`` with ``m = β·p + (1-β)·q``. β=0.5 is the symmetric
    JSD; β → 0 behaves like forward KL and β → 1 like reverse KL, up to scale (GKD).

    Args:
        beta: weight of the teacher in the mixture, strictly between 0 and 1.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    log_q = _log_probs(student_logits, temperature)
    log_p = _log_probs(teacher_logits, temperature)
    # log m computed stably in log space: log(β·p + (1-β)·q).
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log(1.0 - beta))
    per_token = beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
    return _masked_mean(per_token, mask)


def tvd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Total variation distance ½·Σ|p - q|, averaged over masked positions.

    ``1 - tvd`` is the expected acceptance rate of a drafted token under speculative
    sampling at this temperature, which makes TVD a direct acceptance objective.
    """
    p = _log_probs(teacher_logits, temperature).exp()
    q = _log_probs(student_logits, temperature).exp()
    return _masked_mean(0.5 * (p - q).abs().sum(-1), mask)


LOSSES = {"forward_kl": forward_kl, "reverse_kl": reverse_kl, "jsd": jsd, "tvd": tvd}


def topk_teacher(
    teacher_logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ``k`` most likely tokens: ``(log-probabilities [..., k], ids [..., k])``.

    Log-probabilities are normalised over the full vocabulary (not renormalised over k), so
    the mass of all other tokens stays known: this is what an offline teacher stores per
    position, and what vLLM returns as ``logprobs``.
    """
    return _log_probs(teacher_logits, temperature).topk(k, dim=-1)


def with_rest(topk_logprobs: torch.Tensor) -> torch.Tensor:
    """Append an "every other token" bucket: ``[..., k]`` log-probs -> ``[..., k+1]``.

    The result is a proper distribution over k+1 outcomes, so every divergence stays exact
    (and 0 only when the k probabilities and the rest agree). Renormalising over the k
    tokens instead would let the student put any mass on tokens outside them, which is
    where its greedy choice would then go.
    """
    mass = topk_logprobs.exp().sum(-1, keepdim=True).clamp(max=1.0 - 1e-6)
    return torch.cat([topk_logprobs, torch.log1p(-mass)], dim=-1)


def gather_student(
    student_logits: torch.Tensor, indices: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The student's log-probabilities at the teacher's top-k ids plus the rest, ``[..., k+1]``."""
    return with_rest(_log_probs(student_logits, temperature).gather(-1, indices))


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy with labels already aligned to the logits.

    Args:
        student_logits: ``[..., V]`` logits.
        labels: ``[...]`` token ids, :data:`IGNORE_INDEX` where no loss is wanted.
    """
    return F.cross_entropy(
        student_logits.float().flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    loss: LossName = "forward_kl",
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    teacher_indices: torch.Tensor | None = None,
    beta: float = 0.5,
    labels: torch.Tensor | None = None,
    ce_weight: float = 0.0,
) -> torch.Tensor:
    """The configured distillation loss, optionally mixed with cross-entropy on labels.

    ``(1 - ce_weight) · D(teacher, student) + ce_weight · CE(student, labels)``.

    Args:
        student_logits: ``[..., V]`` full student logits.
        teacher_logits: ``[..., V]`` full teacher logits, or ``[..., k]`` top-k
            log-probabilities (:func:`topk_teacher`) when ``teacher_indices`` is given.
        loss: which divergence D.
        mask: ``[...]`` bool positions that count (e.g. not padding).
        temperature: softening temperature for D.
        top_k: compare only the teacher's k most likely tokens plus "the rest" (online
            teacher; see :func:`with_rest`).
        teacher_indices: ``[..., k]`` token ids of stored top-k teacher log-probs (offline).
        beta: JSD's β.
        labels: ``[...]`` aligned next-token labels for the CE term.
        ce_weight: share of the CE term, in [0, 1].
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if not 0.0 <= ce_weight <= 1.0:
        raise ValueError(f"ce_weight must be in [0, 1], got {ce_weight}")
    s, t, temp = student_logits, teacher_logits, temperature
    if teacher_indices is None and top_k is not None and top_k < t.shape[-1]:
        t, teacher_indices = topk_teacher(t, top_k, temperature)
    elif teacher_indices is not None and temperature != 1.0:
        raise ValueError("stored top-k teacher log-probs are at temperature 1; use temperature 1")
    if teacher_indices is not None:
        # Both sides become normalised (k+1)-bucket log-probs; softmax of those is identity.
        s, t, temp = gather_student(s, teacher_indices, temperature), with_rest(t), 1.0
    kwargs = {"beta": beta} if loss == "jsd" else {}
    total = LOSSES[loss](s, t, mask=mask, temperature=temp, **kwargs)
    if ce_weight > 0.0:
        if labels is None:
            raise ValueError("ce_weight > 0 needs labels")
        total = (1.0 - ce_weight) * total + ce_weight * cross_entropy(student_logits, labels)
    return total
