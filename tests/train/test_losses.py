"""Distillation losses equal an independent float64 reference and vanish for equal inputs."""

from __future__ import annotations

import math

import pytest
import torch

from soaes.train.losses import (
    IGNORE_INDEX,
    LOSSES,
    distillation_loss,
    forward_kl,
    jsd,
    reverse_kl,
    topk_teacher,
    tvd,
)


def _softmax(row: list[float], t: float) -> list[float]:
    z = [x / t for x in row]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    return [x / sum(e) for x in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _reference(
    name: str,
    s: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    beta: float = 0.5,
) -> float:
    """Plain-Python per-position divergences, averaged over masked positions."""
    vals = []
    for srow, trow, keep in zip(
        s.reshape(-1, s.shape[-1]).tolist(),
        t.reshape(-1, t.shape[-1]).tolist(),
        mask.flatten().tolist(),
        strict=True,
    ):
        if not keep:
            continue
        q, p = _softmax(srow, temperature), _softmax(trow, temperature)
        if name == "forward_kl":
            vals.append(_kl(p, q))
        elif name == "reverse_kl":
            vals.append(_kl(q, p))
        elif name == "jsd":
            m = [beta * a + (1 - beta) * b for a, b in zip(p, q, strict=True)]
            vals.append(beta * _kl(p, m) + (1 - beta) * _kl(q, m))
        else:
            vals.append(0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True)))
    return sum(vals) / len(vals)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 11, generator=g) * 2
    t = torch.randn(2, 5, 11, generator=g) * 2
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False  # padding must not count
    return s, t, mask


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_loss_matches_reference(name, temperature, logits):
    s, t, mask = logits
    got = LOSSES[name](s, t, mask=mask, temperature=temperature)
    want = _reference(name, s, t, mask, temperature)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert got.item() > 0


@pytest.mark.parametrize("beta", [0.1, 0.9])
def test_jsd_beta_matches_reference(beta, logits):
    s, t, mask = logits
    got = jsd(s, t, mask=mask, beta=beta)
    assert got.item() == pytest.approx(_reference("jsd", s, t, mask, 1.0, beta), rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_is_zero_for_identical_distributions(name, logits):
    s, _, mask = logits
    # A constant shift of the logits is the same distribution.
    assert LOSSES[name](s, s + 3.0, mask=mask).item() == pytest.approx(0.0, abs=1e-6)


def test_tvd_is_one_minus_overlap(logits):
    s, t, _ = logits
    p, q = t.softmax(-1), s.softmax(-1)
    overlap = torch.minimum(p, q).sum(-1).mean()  # acceptance rate of speculative sampling
    assert (1 - tvd(s, t)).item() == pytest.approx(overlap.item(), rel=1e-5)


def test_gradient_flows_to_student_only(logits):
    s, t, mask = logits
    s = s.clone().requires_grad_(True)
    forward_kl(s, t, mask=mask).backward()
    assert s.grad is not None and s.grad[1, 3:].abs().sum() == 0  # masked rows get no grad
    assert s.grad[0].abs().sum() > 0


def test_top_k_online_equals_offline(logits):
    s, t, mask = logits
    online = distillation_loss(s, t, loss="reverse_kl", mask=mask, top_k=4)
    logprobs, idx = topk_teacher(t, 4)
    offline = distillation_loss(s, logprobs, loss="reverse_kl", mask=mask, teacher_indices=idx)
    # Reference: 5 buckets (the teacher's top 4 tokens, then everything else).
    p, q = t.softmax(-1), s.softmax(-1)
    top = p.topk(4, dim=-1).indices
    p5 = torch.cat([p.gather(-1, top), 1 - p.gather(-1, top).sum(-1, keepdim=True)], -1)
    q5 = torch.cat([q.gather(-1, top), 1 - q.gather(-1, top).sum(-1, keepdim=True)], -1)
    want = ((q5 * (q5 / p5).log()).sum(-1) * mask).sum() / mask.sum()
    assert online.item() == pytest.approx(offline.item(), rel=1e-6)
    assert online.item() == pytest.approx(want.item(), rel=1e-4)
    # Coarsening never increases a divergence (data processing inequality).
    assert online.item() < reverse_kl(s, t, mask=mask).item()


def test_top_k_is_zero_for_identical_and_rejects_offline_temperature(logits):
    s, _, mask = logits
    assert distillation_loss(s, s, loss="tvd", top_k=3).item() == pytest.approx(0, abs=1e-6)
    logprobs, idx = topk_teacher(s, 3)
    with pytest.raises(ValueError, match="temperature 1"):
        distillation_loss(s, logprobs, teacher_indices=idx, temperature=2.0)


def test_ce_mix(logits):
    s, t, mask = logits
    labels = torch.randint(0, 11, (2, 5))
    labels[~mask] = IGNORE_INDEX
    d = forward_kl(s, t, mask=mask)
    ce = torch.nn.functional.cross_entropy(s[mask], labels[mask])
    mixed = distillation_loss(s, t, mask=mask, labels=labels, ce_weight=0.25)
    assert mixed.item() == pytest.approx((0.75 * d + 0.25 * ce).item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs labels"):
        distillation_loss(s, t, ce_weight=0.5)
    with pytest.raises(ValueError, match="loss must be one of"):
        distillation_loss(s, t, loss="kl")  # type: ignore[arg-type]
