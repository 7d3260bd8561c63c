"""Configs of the Ray Train + DeepSpeed pipelines: continual pre-training and progressive SFT.

One block per concern (scaling, DeepSpeed, optimiser, checkpoints, fault tolerance, logging)
shared by ``cpt`` and ``sft``. The same YAML runs 2 CPU workers here and 64 GPUs on a cluster:
only ``scaling``, ``deepspeed.precision``/``zero_stage`` and the model path change.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from soaes.config.base import StrictModel
from soaes.config.common import RayConfig
from soaes.config.model import ModelRef


class ScalingSpec(StrictModel):
    """Ray Train ``ScalingConfig``: how many workers and what each one reserves."""

    num_workers: int = Field(default=2, ge=1, description="Training workers (one rank each).")
    use_gpu: bool = Field(default=False, description="One GPU per worker (NCCL); CPU uses gloo.")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="Logical CPUs per worker.")
    gpus_per_worker: float = Field(default=1.0, gt=0, description="GPUs per worker when use_gpu.")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="Extra custom resources per worker, e.g. {'A100': 1}."
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        default="PACK", description="Placement group strategy of the worker group."
    )


class DeepSpeedSpec(StrictModel):
    """The DeepSpeed engine: ZeRO stage, precision, offload, activation checkpointing."""

    zero_stage: int = Field(default=2, ge=0, le=3, description="ZeRO stage 0 (DDP), 1, 2 or 3.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32",
        description="Training precision: fp32 on CPU (bf16 is ~11x slower there), bf16 on GPU.",
    )
    optimizer: Literal["torch_adamw", "deepspeed_adamw"] = Field(
        default="torch_adamw",
        description="'torch_adamw': torch.optim.AdamW as client optimizer (CPU, no compile); "
        "'deepspeed_adamw': DeepSpeed builds AdamW (FusedAdam on GPU, DeepSpeedCPUAdam with offload).",
    )
    offload_optimizer: Literal["none", "cpu"] = Field(
        default="none", description="ZeRO-Offload of optimizer states to host memory (stage >= 1)."
    )
    offload_param: Literal["none", "cpu"] = Field(
        default="none", description="ZeRO-Infinity offload of parameters to host memory (stage 3)."
    )
    activation_checkpointing: bool = Field(
        default=False,
        description="Recompute decoder-layer activations in backward (HF gradient checkpointing).",
    )
    overlap_comm: bool = Field(
        default=False, description="Overlap gradient reduction with backward."
    )
    reduce_bucket_size: int = Field(
        default=50_000_000, ge=1, description="Elements per reduce bucket."
    )
    zero_on_one_worker: bool = Field(
        default=False,
        description="Keep zero_stage 1-3 when the run has a single worker and no offload. "
        "False (default): such a run uses stage 0, since one worker has nothing to partition and "
        "ZeRO-1/2 then only copy every gradient into flat buffers (about 11 ms of a 200 ms "
        "step at micro-batch 16 on CPU, scripts/profile_train_step.py).",
    )
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Raw DeepSpeed config keys merged last (deep merge): any engine option passes through.",
    )

    @model_validator(mode="after")
    def _check(self) -> DeepSpeedSpec:
        if self.offload_param != "none" and self.zero_stage != 3:
            raise ValueError("offload_param needs zero_stage 3")
        if self.offload_optimizer != "none" and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        if self.offload_optimizer != "none" and self.optimizer != "deepspeed_adamw":
            raise ValueError(
                "offload_optimizer needs optimizer 'deepspeed_adamw' (DeepSpeedCPUAdam)"
            )
        return self


class OptimSpec(StrictModel):
    """AdamW and the learning-rate schedule (linear warmup, then cosine/linear/constant)."""

    lr: float = Field(default=1e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="AdamW betas.")
    eps: float = Field(default=1e-8, gt=0, description="AdamW epsilon.")
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="Global grad-norm clip; null: off."
    )
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Decay after warmup."
    )
    warmup_steps: int = Field(default=0, ge=0, description="Linear warmup optimizer steps.")
    warmup_ratio: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Warmup as a share of total steps (used when warmup_steps is 0).",
    )
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final LR as a share of lr.")


class CheckpointSpec(StrictModel):
    """DeepSpeed checkpoints (exact resume) and the final HF export."""

    every_steps: int = Field(
        default=100, ge=0, description="Save every N optimizer steps; 0: only at the end."
    )
    keep_last: int = Field(default=2, ge=1, description="Complete checkpoints kept on disk.")
    at_end: bool = Field(
        default=True, description="Save a DeepSpeed checkpoint after the last step."
    )
    export_hf: bool = Field(
        default=True, description="Write hf/ (safetensors + config + tokenizer)."
    )
    resume: bool = Field(
        default=True,
        description="Continue from output_dir's checkpoints/latest when present (manual resume).",
    )


class FaultSpec(StrictModel):
    """Automatic recovery from worker failures, and a fault-injection hook for tests."""

    max_failures: int = Field(
        default=1,
        ge=-1,
        description="Worker-group restarts from the last checkpoint (-1: unlimited).",
    )
    fail_at_step: int | None = Field(
        default=None,
        ge=1,
        description="Test hook: one worker exits (os._exit) right after this step, once per run "
        "folder. The env var SOAES_FAIL_AT_STEP sets it too.",
    )
    fail_rank: int = Field(
        default=1,
        ge=0,
        description="Rank that exits for fail_at_step (checked against scaling.num_workers only "
        "when a fault is injected).",
    )


def check_fail_rank(fail_at_step: int | None, fail_rank: int, num_workers: int) -> None:
    """Refuse a fault injection aimed at a rank that does not exist.

    Only an injected fault (``fail_at_step`` set, by the config or ``$SOAES_FAIL_AT_STEP``)
    needs ``fail_rank`` to name a worker: the default rank 1 must not block single-worker runs.
    """
    if fail_at_step is not None and fail_rank >= num_workers:
        raise ValueError(
            f"fault.fail_rank {fail_rank} >= scaling.num_workers {num_workers}: "
            "fault.fail_at_step needs a fail_rank below the number of workers"
        )


class LoggingSpec(StrictModel):
    """Metrics cadence: metrics.jsonl, progress line, ray.train.report, evaluation."""

    log_every_steps: int = Field(
        default=10,
        ge=1,
        description="Log (metrics.jsonl, progress line, Prometheus) every N optimizer steps; "
        "the loop reads the loss from the device only at these steps.",
    )
    report_every_steps: int = Field(
        default=0,
        ge=0,
        description="Also send the train record to ray.train.report every N steps (a multiple "
        "of log_every_steps); 0: report only with checkpoints and at the end. Each report is a "
        "cross-worker barrier and waits for Ray Train's controller (one result per 2 s poll).",
    )
    eval_every_steps: int = Field(
        default=0, ge=0, description="Evaluate every N steps; 0: start and end only."
    )
    eval_max_batches: int = Field(
        default=20, ge=1, description="Micro-batches per eval set (per rank)."
    )
    eval_at_start: bool = Field(
        default=True, description="Evaluate before the first step (the baseline)."
    )
    trace_batches: bool = Field(
        default=False, description="Log a fingerprint of each consumed micro-batch (resume tests)."
    )
    peak_tflops_per_device: float | None = Field(
        default=None, gt=0, description="Peak TFLOP/s of one accelerator: enables the MFU metric."
    )

    @model_validator(mode="after")
    def _check_report(self) -> LoggingSpec:
        if self.report_every_steps % self.log_every_steps:
            raise ValueError(
                f"logging.report_every_steps {self.report_every_steps} must be a multiple of "
                f"log_every_steps {self.log_every_steps} (a report sends a logged record)"
            )
        return self


class TrainBase(StrictModel):
    """Fields shared by every training pipeline (cpt, sft)."""

    name: str = Field(description="Run name.")
    output_dir: str = Field(
        description="Run folder: checkpoints/, hf/, metrics.jsonl, loss_curve.png."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    model: ModelRef = Field(description="Initial weights (preset handle, folder or hub id).")
    data_dir: str = Field(
        description="Output folder of the matching data pipeline (with manifest.json)."
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Ray Train workers.")
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec, description="DeepSpeed engine.")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="Optimizer and LR schedule.")
    micro_batch_size: int = Field(
        default=4, ge=1, description="Sequences per worker per micro-step."
    )
    materialize_max_mb: float = Field(
        default=1024,
        ge=0,
        description="Read a train set of at most this many MB (parquet) into the object store "
        "before the workers start (faster start on small machines); larger sets stream. 0: stream.",
    )
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-steps per optimizer step.")
    seed: int = Field(default=0, description="Seed of weights-independent randomness.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpointing.")
    fault: FaultSpec = Field(default_factory=FaultSpec, description="Fault tolerance.")
    logging: LoggingSpec = Field(default_factory=LoggingSpec, description="Metrics and evaluation.")

    @model_validator(mode="after")
    def _check_hardware(self) -> TrainBase:
        if not self.scaling.use_gpu and self.deepspeed.precision != "fp32":
            raise ValueError(
                f"deepspeed.precision {self.deepspeed.precision!r} needs scaling.use_gpu: "
                "CPU training runs in fp32"
            )
        if (
            self.scaling.use_gpu
            and self.model.dtype == "float32"
            and self.deepspeed.precision == "bf16"
        ):
            raise ValueError("model.dtype float32 with bf16 training: set model.dtype bfloat16")
        check_fail_rank(self.fault.fail_at_step, self.fault.fail_rank, self.scaling.num_workers)
        return self


class CPTConfig(TrainBase):
    """Pipeline ``cpt``: continual pre-training on packed shards with held-out perplexity."""

    kind: Literal["cpt"] = Field(default="cpt", description="Pipeline kind.")
    epochs: float = Field(
        default=1.0, gt=0, description="Passes over train/ (when max_steps is null)."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps; null: derived from epochs."
    )
    eval_groups: list[str] | None = Field(
        default=None, description="validation/<group> sets to evaluate; null: every group found."
    )


class SFTStageSpec(StrictModel):
    """One SFT stage: its data, learning rate and length."""

    name: str = Field(description="Stage name: the run subfolder and, by default, the data folder.")
    data: list[str] | None = Field(
        default=None,
        description="Stage folders of data_dir to train on (mixed); null: [name].",
    )
    lr: float | None = Field(
        default=None, gt=0, description="Peak LR of this stage; null: optim.lr."
    )
    epochs: float | None = Field(
        default=None,
        gt=0,
        description="Passes over the stage data; null: the data manifest's epochs (else 1).",
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps; overrides epochs."
    )

    def data_names(self) -> list[str]:
        """The data stage folders this stage reads."""
        return list(self.data or [self.name])


class SFTConfig(TrainBase):
    """Pipeline ``sft``: domain-progressive curriculum (stage k starts from stage k-1) or one mixed stage."""

    kind: Literal["sft"] = Field(default="sft", description="Pipeline kind.")
    mode: Literal["progressive", "single_stage"] = Field(
        default="progressive",
        description="'progressive': stages in order, each from the previous one's weights; "
        "'single_stage': one stage mixing all data (the ablation baseline).",
    )
    stages: list[SFTStageSpec] = Field(min_length=1, description="Stages in curriculum order.")
    shuffle_buffer_rows: int = Field(
        default=20_000, ge=0, description="Seeded local shuffle window of examples (0: data order)."
    )
    pad_to_multiple: int = Field(
        default=8, ge=1, description="Pad each batch's length to a multiple of this."
    )

    @model_validator(mode="after")
    def _check_stages(self) -> SFTConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: names must be unique, got {names}")
        if self.mode == "single_stage" and len(self.stages) != 1:
            raise ValueError(
                f"mode single_stage needs exactly one stage (list the data to mix in stages.0.data), got {len(self.stages)}"
            )
        if len(self.stages) > 1 and not self.checkpoint.export_hf:
            raise ValueError(
                "checkpoint.export_hf must be true: each stage starts from the previous stage's hf/"
            )
        return self
