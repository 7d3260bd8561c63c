"""Teacher-forced top-1 agreement of a draft model with its target, per prompt set.

The target answers each held-out prompt greedily (PyTorch, no vLLM); the draft then reads
prompt + answer and predicts each answer token. The share it gets right bounds what
speculative decoding can accept, independently of the engine that measures acceptance.

    python scripts/draft_agreement.py --target runs/full_demo/sft_cpt/stage2_domain/hf \\
        --draft runs/spec_general/hf --sources general_en laws_qa
"""

from __future__ import annotations

import argparse


def agreement(tok, target, draft, texts: list[str], max_new_tokens: int) -> tuple[float, int]:
    """Share of the target's greedy answer tokens that the draft's top-1 predicts."""
    import torch

    agree = n = 0
    for text in texts:
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = target.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
            pred = draft(out).logits[0, ids.shape[1] - 1 : -1].argmax(-1)
        answer = out[0, ids.shape[1] :]
        agree += int((pred == answer).sum())
        n += len(answer)
    return agree / max(n, 1), n


def main() -> None:
    """Print the agreement on each prompt source's held-out (eval) split."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soaes.config.distill import PromptsConfig
    from soaes.data.prompts import load_prompts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="target HF folder")
    p.add_argument("--draft", required=True, help="draft HF folder (a separate draft model)")
    p.add_argument("--sources", nargs="+", default=["general_en", "laws_qa"])
    p.add_argument("--num-prompts", type=int, default=12)
    p.add_argument("--max-new-tokens", type=int, default=48)
    a = p.parse_args()
    tok = AutoTokenizer.from_pretrained(a.target)
    target = AutoModelForCausalLM.from_pretrained(a.target, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(a.draft, dtype=torch.float32).eval()
    for src in a.sources:
        cfg = PromptsConfig(source=src, split="eval", num_prompts=a.num_prompts)
        share, n = agreement(tok, target, draft, load_prompts(cfg, tok), a.max_new_tokens)
        print(f"{src}: top-1 agreement {share:.3f} over {n} answer tokens")


if __name__ == "__main__":
    main()
