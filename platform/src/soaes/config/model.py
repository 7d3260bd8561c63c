"""Model references and presets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soaes.config.base import StrictModel


class ModelRef(StrictModel):
    """Where a model comes from: a preset handle, a local folder or a hub id.

    Preset handles look like ``tiny/target``, ``tiny/draft``, ``smollm2/base``; anything else
    is passed to transformers / vLLM as given (a folder here, a hub id or mounted path on a
    cluster).
    """

    path: str = Field(description="Preset handle (e.g. 'tiny/target'), local folder or hub id.")
    tokenizer: str | None = Field(
        default=None, description="Tokenizer folder/handle when it differs from the model's."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="Weights dtype: float32 on CPU, bfloat16 on GPU."
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Allow custom modelling code from the checkpoint. Off by default.",
    )


class PresetSpec(StrictModel):
    """A named target/draft pair with its tokenizer and hardware settings."""

    name: str = Field(description="Preset name.")
    target: str = Field(description="Target (teacher) model: handle, folder or hub id.")
    draft: str = Field(description="Draft (student) model: handle, folder or hub id.")
    tokenizer: str = Field(description="Tokenizer shared by target and draft.")
    dtype: Literal["float32", "bfloat16"] = Field(description="Training/serving dtype.")
    tensor_parallel_size: int = Field(default=1, ge=1, description="vLLM TP degree of the target.")
    accelerator: Literal["cpu", "gpu"] = Field(description="Where the preset runs.")
    runnable_here: bool = Field(description="Whether it runs on a CPU-only dev machine.")
