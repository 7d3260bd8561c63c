"""The tiny preset: a byte-level BPE tokenizer and random Qwen2 target/draft, built in seconds."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from soaes.assets.convert import CHATML_TEMPLATE, QWEN2_SPECIALS
from soaes.assets.fetch import cache_dir
from soaes.assets.texts import iter_source_texts

TINY_VOCAB = 2048
# head_dim 64 on both: vLLM's CPU attention backend supports it; 16 is not supported.
TARGET_SHAPE = dict(
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=384,
)
DRAFT_SHAPE = dict(
    hidden_size=64,
    num_hidden_layers=1,
    num_attention_heads=1,
    num_key_value_heads=1,
    intermediate_size=192,
)


def models_dir() -> Path:
    """Where built preset models live (under the soaes cache)."""
    return cache_dir() / "models"


def tiny_dir() -> Path:
    """Folder of the tiny preset."""
    return models_dir() / "tiny"


def _training_text() -> list[str]:
    """A few MB of real zh + en text from the assets, fixed order (deterministic BPE)."""
    texts = []
    for name, limit in (("laws", 4000), ("peoples_daily", 3000), ("shakespeare", 6000)):
        texts.extend(t for _, t in zip(range(limit), iter_source_texts(name), strict=False))
    return texts


def build_tokenizer(out: Path) -> None:
    """Train a 2,048-token byte-level BPE with ChatML specials and save it to ``out``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=QWEN2_SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out)


def build_model(out: Path, shape: dict, vocab_size: int, seed: int) -> None:
    """Save a randomly initialised Qwen2 causal LM with the given shape as safetensors."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab_size,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=2,
        pad_token_id=0,
        torch_dtype="float32",
        **shape,
    )
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)


def build_tiny(force: bool = False) -> dict[str, Path]:
    """Build (once) and return the tiny preset's folders: tokenizer, target, draft.

    Target and draft folders carry the tokenizer too, so vLLM and transformers load each
    folder alone. Published atomically (temp folder, then rename).
    """
    root = tiny_dir()
    parts = {k: root / k for k in ("tokenizer", "target", "draft")}
    if not force and all((p / "DONE").exists() for p in parts.values()):
        return parts
    from transformers import AutoTokenizer

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny.", dir=root.parent))
    try:
        build_tokenizer(tmp / "tokenizer")
        tok = AutoTokenizer.from_pretrained(tmp / "tokenizer")
        for i, (part, shape) in enumerate((("target", TARGET_SHAPE), ("draft", DRAFT_SHAPE))):
            build_model(tmp / part, shape, len(tok), seed=i)
            tok.save_pretrained(tmp / part)
        for part in parts:
            (tmp / part / "DONE").write_text("ok\n")
        if root.exists():
            shutil.rmtree(root)
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return parts
