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


class ServeBenchRef(StrictModel):
    """The serve-benchmark stage: ``soaes bench serve`` on the recipe's own models.

    The recipe points the app at the progressive-SFT model (target) and the distillation
    output (draft + measured k); the numbers land in ``<output_dir>/serve_bench/bench.json``
    and in the report's serving section.
    """

    app: str = Field(description="Serve config file of the spec-decoding app (serve_apps/*.yaml).")
    overrides: list[str] = Field(
        default_factory=list, description="key.path=value overrides of the Serve config."
    )
    requests: int = Field(default=32, ge=1, description="Requests in the load phase.")
    concurrency: int = Field(default=8, ge=1, description="In-flight requests under load.")
    max_tokens: int = Field(default=32, ge=1, description="Tokens generated per request.")
    single_prompts: int = Field(default=4, ge=1, description="Prompts in the 1-stream phase.")
    kill: bool = Field(default=False, description="Also run the replica-kill phase.")
    enabled: bool = Field(default=True, description="Run this stage.")

    def argv(self, out_json: str, wiring: list[str]) -> list[str]:
        """The ``soaes bench serve`` arguments of this stage."""
        args = [
            "--app",
            self.app,
            "--requests",
            str(self.requests),
            "--concurrency",
            str(self.concurrency),
            "--max-tokens",
            str(self.max_tokens),
            "--single-prompts",
            str(self.single_prompts),
            "--out",
            out_json,
        ]
        return [*args, *([] if self.kill else ["--no-kill"]), *self.overrides, *wiring]


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
    report_note: str | None = Field(
        default=None,
        description="A caveat printed under the report's title (e.g. that the run's claims "
        "are not powered, and where the powered run's report is).",
    )
    base_sft_arm: bool = Field(default=True, description="Run the base+SFT ablation arm.")
    distill: StageRef = Field(description="Draft distillation + acceptance (kind distill).")
    serve_bench: ServeBenchRef | None = Field(
        default=None,
        description="Serve benchmark of target + distilled draft over HTTP (null: not run).",
    )
    eval: StageRef = Field(description="Evaluation and report (kind eval).")
    qa_limit: int | None = Field(
        default=None, ge=1, description="Score at most this many held-out domain Q&A items."
    )
    on_error: Literal["stop"] = Field(
        default="stop", description="A failing stage stops the run; re-running resumes it."
    )
