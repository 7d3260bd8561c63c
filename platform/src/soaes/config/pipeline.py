"""The registry of pipeline kinds: ``kind`` -> config model and runner, in one table.

The config loader validates a pipeline YAML against the discriminated union built from this
table; ``soaes run`` and the recipe call the runner registered for the config's ``kind``
(:func:`soaes.recipe.runners.run_pipeline`). Adding a pipeline kind is one line here. The
runner is *named* (``"module:function"``, like a Serve ``import_path``), not imported, so this
module stays in the bottom layer; ``tests/test_layers.py`` checks that every name resolves to
a function taking the registered config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Union

from pydantic import Field

from soaes.config.base import StrictModel
from soaes.config.data import DataCPTConfig, DataSFTConfig
from soaes.config.distill import DistillConfig
from soaes.config.eval import EvalConfig
from soaes.config.full import FullConfig
from soaes.config.train import CPTConfig, SFTConfig


@dataclass(frozen=True)
class PipelineKind:
    """One pipeline kind: the config model its YAML validates into and its runner."""

    config: type[StrictModel]
    runner: str  # "module:function"; the function takes the config, returns a summary dict

    @property
    def kind(self) -> str:
        """The ``kind`` value of the config model."""
        return self.config.model_fields["kind"].default


PIPELINES: dict[str, PipelineKind] = {
    p.kind: p
    for p in (
        PipelineKind(DataCPTConfig, "soaes.data.pipeline:run_cpt_data"),
        PipelineKind(DataSFTConfig, "soaes.data.sft:run_sft_data"),
        PipelineKind(CPTConfig, "soaes.train.cpt:run_cpt"),
        PipelineKind(SFTConfig, "soaes.train.sft:run_sft"),
        PipelineKind(DistillConfig, "soaes.recipe.distill:run_distill_pipeline"),
        PipelineKind(EvalConfig, "soaes.report.pipeline:run_eval"),
        PipelineKind(FullConfig, "soaes.recipe.full:run_full"),
    )
}

PipelineConfig = Annotated[
    Union[tuple(p.config for p in PIPELINES.values())],  # noqa: UP007
    Field(discriminator="kind"),
]
PIPELINE_KINDS: list[str] = list(PIPELINES)
