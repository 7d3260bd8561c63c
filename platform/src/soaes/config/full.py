"""Config of the ``full`` pipeline: the whole SOAEsV2 recipe chained with its ablation arms."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from soaes.config.base import StrictModel
from soaes.config.common import RayConfig


class StageRef(StrictModel):
    """One stage: a pipeline YAML plus overrides; the recipe adds the wiring overrides."""

    pipeline: str = Field(description="Path of the stage's pipeline YAML (relative to the cwd).")
    overrides: list[str] = Field(
        default_factory=list, description="key.path=value overrides applied before the wiring."
    )
    enabled: bool = Field(default=True, description="Run this stage (a disabled arm is skipped).")


class FullConfig(StrictModel):
    """Pipeline ``full``: data -> CPT -> progressive SFT -> distillation -> eval (+ serve bench).

    Outputs go to ``<output_dir>/<stage>/``. A stage whose folder holds a ``STAGE_DONE.json``
    with the same key (its resolved config hash plus the keys of the stages it reads) is
    skipped, so a failed run resumes where it stopped and a changed upstream re-runs
    everything downstream of it.
    """

    kind: Literal["full"] = Field(default="full", description="Pipeline kind.")
    name: str = Field(description="Run name.")
    output_dir: str = Field(description="Root folder of every stage's outputs and the report.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection (all stages).")
    base_model: str = Field(description="Base model handle/folder: CPT's start and the 'base' arm.")
    data_cpt: StageRef = Field(description="CPT corpus pipeline (kind data_cpt).")
    data_sft: StageRef = Field(description="SFT curriculum datasets (kind data_sft).")
    cpt: StageRef = Field(description="Continual pre-training (kind cpt).")
    sft_progressive: StageRef = Field(
        description="Progressive SFT (kind sft, mode progressive): run on CPT ('cpt_sft') and, "
        "for the CPT ablation, on the base model ('base_sft')."
    )
    sft_single: StageRef = Field(
        description="Single-stage SFT on the CPT model (kind sft, mode single_stage): ablation."
    )
    base_sft_arm: bool = Field(default=True, description="Run the base+SFT ablation arm.")
    distill: StageRef = Field(description="Draft distillation + acceptance (kind distill).")
    eval: StageRef = Field(description="Evaluation and report (kind eval).")
    qa_limit: int | None = Field(
        default=None, ge=1, description="Score at most this many held-out domain Q&A items."
    )
    on_error: Literal["stop"] = Field(
        default="stop", description="A failing stage stops the run; re-running resumes it."
    )
