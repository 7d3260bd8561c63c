"""The discriminated union of every pipeline config, keyed by ``kind``."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from soaes.config.data import DataCPTConfig, DataSFTConfig
from soaes.config.distill import DistillConfig
from soaes.config.eval import EvalConfig
from soaes.config.full import FullConfig
from soaes.config.train import CPTConfig, SFTConfig

_MODELS = [DataCPTConfig, DataSFTConfig, EvalConfig, CPTConfig, SFTConfig, DistillConfig, FullConfig]

PipelineConfig = Annotated[Union[tuple(_MODELS)], Field(discriminator="kind")]  # noqa: UP007
PIPELINE_KINDS: list[str] = [m.model_fields["kind"].default for m in _MODELS]
