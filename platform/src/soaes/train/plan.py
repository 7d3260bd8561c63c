"""The resolved plan of a training run: everything a Ray Train worker needs, typed.

The driver (:mod:`soaes.train.cpt`, :mod:`soaes.train.sft`, :mod:`soaes.train.distill`)
builds one :class:`RunPlan` from a validated config and sends it to every worker as the loop
config. Everything in it is a plain dataclass or a frozen pydantic model, so it pickles and
the worker reads typed fields (``plan.run.name``, ``plan.teacher.loss.temperature``), not dict
keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from soaes.config.distill import LossConfig
from soaes.config.train import CheckpointSpec, LoggingSpec, OptimSpec

RunKind = Literal["cpt", "sft", "distill"]
# How rows become model inputs: packed CPT blocks, padded SFT examples, distillation rows
# (padded, with the offline teacher's top-k when stored).
CollateKind = Literal["cpt", "sft", "distill"]


@dataclass(frozen=True)
class RunInfo:
    """Who the run is: the name in progress lines and metric tags, and the facts stored with
    its HF export (``SOAES_EXPORT.json``: a finished SFT stage is recognised by them)."""

    name: str  # the pipeline's name; an SFT stage's is "<pipeline>/<stage>"
    kind: RunKind
    init_from: str  # the initial weights' folder
    config_hash: str
    stage: str | None = None  # the SFT stage

    def export_meta(self) -> dict[str, Any]:
        """The JSON-able facts written beside the HF export."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def metric_tags(self) -> tuple[str, str]:
        """``(run, stage)`` tags of soaes' Prometheus training gauges: the pipeline's name,
        and the SFT stage's name or the run's kind."""
        if self.stage is not None:
            return self.name.removesuffix(f"/{self.stage}"), self.stage
        return self.name, self.kind


@dataclass(frozen=True)
class TeacherPlan:
    """The distillation teacher and objective (distillation runs only)."""

    loss: LossConfig  # objective, temperature, top-k, JSD beta, CE weight
    path: str | None = None  # online teacher's folder; None: offline (stored top-k scores)
    stored_k: int = 0  # top-k log-probs stored with each row (offline teacher), else 0

    @property
    def online(self) -> bool:
        """True when the teacher runs beside the student on every worker."""
        return self.path is not None


@dataclass(frozen=True)
class RunPlan:
    """Everything a worker needs, resolved on the driver (picklable; sent as loop config)."""

    run_dir: str
    run: RunInfo
    model_path: str
    tokenizer_src: str | None
    dtype: str
    trust_remote_code: bool
    activation_checkpointing: bool
    ds_config: dict[str, Any]
    optim: OptimSpec
    micro_batch_size: int
    grad_accum_steps: int
    total_steps: int
    micro_per_epoch: int
    collate: CollateKind
    pad_id: int
    checkpoint: CheckpointSpec
    logging: LoggingSpec
    eval_rows: dict[str, dict[str, list]] = field(default_factory=dict)  # set -> held-out rows
    pad_to_multiple: int = 8
    shuffle_buffer_rows: int = 0
    seed: int = 0
    fail_at_step: int | None = None
    fail_rank: int = 1
    extensions_dir: str | None = None
    submit_time: float = 0.0
    teacher: TeacherPlan | None = None

    @property
    def ckpt_dir(self) -> Path:
        """The run's ``checkpoints/`` folder."""
        return Path(self.run_dir) / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """The run's ``metrics.jsonl``."""
        return Path(self.run_dir) / "metrics.jsonl"
