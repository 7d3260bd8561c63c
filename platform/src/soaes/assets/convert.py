"""Conversions run once after extraction: Qwen2 tokenizer from tiktoken ranks, SmolLM2 GGUF -> HF."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

# Qwen2's pre-tokenizer split (from Qwen2Tokenizer); required for ids equal to Qwen2's.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as Qwen2.5-Instruct renders it (default system prompt shortened).
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def convert_qwen2_tokenizer(folder: Path) -> None:
    """Turn ``qwen.tiktoken`` into a transformers fast tokenizer folder (``folder/tokenizer``).

    Ids equal Qwen2's: BPE ranks are the ids, the three ChatML specials follow at
    151643-151645, NFC normalisation and Qwen's split regex are set.
    """
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = folder / "qwen.tiktoken"
    tok = TikTokenConverter(
        vocab_file=str(ranks),
        pattern=QWEN2_PATTERN,
        add_prefix_space=False,
        extra_special_tokens=QWEN2_SPECIALS,
    ).converted()
    tok.normalizer = normalizers.NFC()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    ids = fast.convert_tokens_to_ids(QWEN2_SPECIALS)
    if ids != [151643, 151644, 151645]:
        raise RuntimeError(f"Qwen2 special token ids came out as {ids}")
    fast.save_pretrained(folder / "tokenizer")
    # keep qwen.tiktoken: tests compare ids against tiktoken on the same ranks


def convert_smollm2_hf(folder: Path) -> None:
    """Dequantise SmolLM2-135M-Instruct GGUF into an fp32 safetensors HF folder (``folder/hf``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = next(folder.glob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
    # The GGUF loader marks the model quantised; it is plain fp32 after dequantisation.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = folder / "hf"
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    gguf.unlink()


CONVERTERS: dict[str, Callable[[Path], None]] = {
    "qwen2_tokenizer": convert_qwen2_tokenizer,
    "smollm2_hf": convert_smollm2_hf,
}
