"""GPU checks of the distillation losses and a bf16 distillation step (skipped without CUDA).

The CPU suite checks the losses against reference computations in fp32; on GPU clusters the
same functions run on CUDA tensors under bf16 autocast. These tests pin down that they still
agree with the fp32 reference there and that a bf16 student distilled toward a teacher on
the GPU lowers the held-out KL. They import only torch, transformers and soaes.train.losses,
so they run on a GPU machine without Ray (``pytest --noconftest tests/train/test_gpu_distill.py``).
"""

from __future__ import annotations

import pytest
import torch

from soaes.train import losses as L

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd", "tvd"])
@pytest.mark.parametrize("top_k", [None, 32])
def test_losses_on_cuda_bf16_match_the_fp32_reference(name, top_k):
    g = torch.Generator().manual_seed(0)
    s, t = (torch.randn(4, 64, 4096, generator=g) * 3 for _ in range(2))
    mask = torch.rand(4, 64, generator=g) > 0.2
    ref = L.distillation_loss(s, t, loss=name, mask=mask, top_k=top_k, temperature=1.5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = L.distillation_loss(
            s.cuda().bfloat16(),
            t.cuda().bfloat16(),
            loss=name,
            mask=mask.cuda(),
            top_k=top_k,
            temperature=1.5,
        )
    assert got.device.type == "cuda" and torch.isfinite(got)
    assert got.float().cpu().item() == pytest.approx(ref.item(), rel=0.03, abs=1e-3)
    same = L.distillation_loss(
        t.cuda().bfloat16(), t.cuda().bfloat16(), loss=name, mask=mask.cuda(), top_k=top_k
    )
    assert same.float().item() == pytest.approx(0.0, abs=1e-3)


def _tiny(layers: int, seed: int, init: float):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        initializer_range=init,
    )
    return Qwen2ForCausalLM(cfg).cuda()


def test_bf16_distillation_on_cuda_lowers_heldout_kl():
    # A 2-layer random teacher with sharper outputs, a 1-layer student; text drawn from 128
    # token ids (a small language the student can learn the teacher's behaviour on).
    teacher, student = _tiny(2, 0, 0.1).eval(), _tiny(1, 1, 0.02)
    g = torch.Generator().manual_seed(0)
    held = torch.randint(0, 128, (16, 64), generator=g).cuda()

    def heldout_kl() -> float:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return L.forward_kl(student(held).logits.float(), teacher(held).logits.float()).item()

    before = heldout_kl()
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    for _ in range(300):
        batch = torch.randint(0, 128, (16, 64), generator=g).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with torch.no_grad():
                t_logits = teacher(batch).logits
            loss = L.distillation_loss(
                student(batch).logits.float(), t_logits.float(), loss="forward_kl"
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = heldout_kl()
    assert after < 0.85 * before, (before, after)  # fp32 on CPU: 0.665 -> 0.516
