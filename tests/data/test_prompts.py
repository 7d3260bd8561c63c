"""General English prompts: deterministic, held-out split disjoint from the training split."""

from __future__ import annotations

import pytest

from soaes.config.distill import OnPolicyConfig, PromptsConfig
from soaes.data.prompts import load_prompts


class _NoTemplate:
    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "<user>" + messages[-1]["content"]


def test_general_prompts_split_and_order():
    train = PromptsConfig(source="general_en", split="train", num_prompts=10_000)
    held = PromptsConfig(source="general_en", split="eval", num_prompts=10_000)
    a, b = load_prompts(train, _NoTemplate()), load_prompts(held, _NoTemplate())
    assert len(b) >= 50 and len(a) >= 9 * len(b) - 9
    assert not set(a) & set(b) and all(p.startswith("<user>") for p in a)
    assert load_prompts(held, _NoTemplate()) == b  # deterministic


def test_onpolicy_extra_prompt_sets_must_be_training_split():
    domain = PromptsConfig(source="laws_qa", split="train")
    OnPolicyConfig(
        prompts=domain, extra_prompts=[PromptsConfig(source="general_en", split="train")]
    )
    with pytest.raises(ValueError, match="split must be 'train'"):
        OnPolicyConfig(
            prompts=domain, extra_prompts=[PromptsConfig(source="general_en", split="eval")]
        )
