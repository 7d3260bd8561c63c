"""Model presets and the resolver that turns a handle into a local folder.

``tiny``: random-init Qwen2-architecture target + smaller draft sharing one byte-level BPE
tokenizer trained locally in seconds (tests, CI). ``smollm2``: the real SmolLM2-135M-Instruct
as base/target (demo). ``qwen2.5``: the production pair, validated but not runnable here.
"""

from __future__ import annotations

from pathlib import Path

from soaes.assets.fetch import require
from soaes.config.model import PresetSpec
from soaes.models.tiny import build_tiny

PRESETS: dict[str, PresetSpec] = {
    p.name: p
    for p in [
        PresetSpec(
            name="tiny",
            target="tiny/target",
            draft="tiny/draft",
            tokenizer="tiny/tokenizer",
            dtype="float32",
            accelerator="cpu",
            runnable_here=True,
        ),
        PresetSpec(
            name="smollm2",
            target="smollm2/base",
            draft="smollm2/draft",
            tokenizer="smollm2/base",
            dtype="float32",
            accelerator="cpu",
            runnable_here=True,
        ),
        PresetSpec(
            name="qwen2.5-72b",
            target="Qwen/Qwen2.5-72B-Instruct",
            draft="Qwen/Qwen2.5-7B-Instruct",
            tokenizer="Qwen/Qwen2.5-72B-Instruct",
            dtype="bfloat16",
            tensor_parallel_size=4,
            accelerator="gpu",
            runnable_here=False,
        ),
    ]
}


def resolve(handle: str) -> str:
    """Turn a model handle into something transformers/vLLM can load.

    ``tiny/*`` builds the tiny preset on first use; ``smollm2/base`` is the converted asset;
    ``qwen2/tokenizer`` the converted Qwen2 tokenizer. An existing local path becomes
    absolute (Ray workers run in other working directories, where a relative path would be
    read as a hub id); anything else (a hub id) is returned unchanged.
    """
    if handle.startswith("tiny/"):
        part = handle.split("/", 1)[1]
        paths = build_tiny()
        if part not in paths:
            raise ValueError(f"unknown tiny part {part!r}; have {sorted(paths)}")
        return str(paths[part])
    if handle == "smollm2/base":
        return str(require("smollm2") / "hf")
    if handle == "qwen2/tokenizer":
        return str(require("qwen2_tokenizer") / "tokenizer")
    local = Path(handle).expanduser()
    if local.exists():
        return str(local.resolve())
    return handle
