"""Configs of draft construction, distillation data, losses and acceptance measurement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from soaes.config.base import StrictModel
from soaes.config.common import RayConfig
from soaes.config.inference import EngineConfig
from soaes.config.model import ModelRef
from soaes.config.train import (
    CheckpointSpec,
    DeepSpeedSpec,
    FaultSpec,
    LoggingSpec,
    OptimSpec,
    ScalingSpec,
    check_fail_rank,
)


class DraftConfig(StrictModel):
    """How the draft (student) is obtained; its vocabulary must equal the target's."""

    method: Literal["prune", "fresh", "pretrained"] = Field(
        description="prune: keep some of the target's layers; fresh: new small model of the "
        "target's architecture; pretrained: an existing smaller checkpoint."
    )
    path: str | None = Field(default=None, description="pretrained: the draft's handle/folder.")
    keep_layers: list[int] | None = Field(
        default=None, description="prune: indices of the target layers to keep (in order)."
    )
    num_layers: int | None = Field(
        default=None,
        ge=1,
        description="prune: keep the first N layers (when keep_layers is unset); fresh: layers.",
    )
    hidden_size: int | None = Field(default=None, ge=8, description="fresh: model width.")
    intermediate_size: int | None = Field(default=None, ge=8, description="fresh: MLP width.")
    num_attention_heads: int | None = Field(default=None, ge=1, description="fresh: query heads.")
    num_key_value_heads: int | None = Field(default=None, ge=1, description="fresh: KV heads.")
    head_dim: int | None = Field(
        default=None, ge=8, description="fresh: per-head width (vLLM CPU supports 64, 128, …)."
    )
    init_embeddings: bool = Field(
        default=True, description="fresh: start embeddings from the target's (copy or SVD)."
    )
    seed: int = Field(default=0, description="fresh: initialisation seed.")

    @model_validator(mode="after")
    def _check(self) -> DraftConfig:
        if self.method == "pretrained" and not self.path:
            raise ValueError("path is required for method 'pretrained'")
        if self.method == "prune" and not (self.keep_layers or self.num_layers):
            raise ValueError("method 'prune' needs keep_layers or num_layers")
        if self.method == "fresh" and not self.shape_overrides():
            raise ValueError("method 'fresh' needs at least one shape field (e.g. num_layers)")
        if self.method != "fresh" and self.shape_overrides(include_layers=False):
            raise ValueError(f"shape fields only apply to method 'fresh', not {self.method!r}")
        return self

    def layers_to_keep(self) -> list[int]:
        """The target layer indices a pruned draft keeps."""
        return list(self.keep_layers or range(self.num_layers or 0))

    def shape_overrides(self, include_layers: bool = True) -> dict[str, int]:
        """The config fields a fresh draft overrides on the target's config."""
        shape = {
            k: getattr(self, k)
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
            )
        }
        if include_layers:
            shape["num_hidden_layers"] = self.num_layers
        return {k: v for k, v in shape.items() if v is not None}


class PromptsConfig(StrictModel):
    """Domain prompts: to generate on-policy training text, or to measure acceptance."""

    source: Literal["laws_qa", "insuranceqa_en", "insuranceqa_zh", "general_en", "jsonl"] = Field(
        default="laws_qa",
        description="laws_qa: questions about real law articles (laws.db); insuranceqa_en/zh: "
        "insurance questions (eval split = the corpus's test file); general_en: general "
        "English prompts (chatterbot corpus openers); jsonl: a user file.",
    )
    path: str | None = Field(
        default=None, description="jsonl: file of {'prompt': str} or {'messages': [...]} lines."
    )
    split: Literal["train", "eval"] = Field(
        description="Which deterministic split (eval: every 10th item, or the corpus's test "
        "file): train and eval prompts never overlap."
    )
    num_prompts: int = Field(default=64, ge=1, description="How many prompts to take.")
    chat_template: bool = Field(
        default=True,
        description="Render each prompt as a user turn with the tokenizer's chat template.",
    )
    seed: int = Field(default=0, description="Shuffle seed before taking num_prompts.")

    @model_validator(mode="after")
    def _check(self) -> PromptsConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("path is required for source 'jsonl'")
        return self


class OnPolicyConfig(StrictModel):
    """DistillSpec-style training text: a model's own greedy/sampled continuations."""

    generator: Literal["target", "draft"] = Field(
        default="target", description="Which model writes the continuations."
    )
    prompts: PromptsConfig = Field(description="Domain prompts to continue (use split 'train').")
    extra_prompts: list[PromptsConfig] = Field(
        default_factory=list,
        description="More prompt sets answered the same way (e.g. general_en beside the "
        "domain), so the draft also sees the target off the domain; split 'train' each.",
    )
    max_tokens: int = Field(default=128, ge=1, description="Tokens generated per prompt.")
    temperature: float = Field(default=0.0, ge=0, description="0 = greedy (what serving verifies).")
    samples_per_prompt: int = Field(default=1, ge=1, description="Continuations per prompt.")
    weight: float = Field(default=1.0, gt=0, description="Sampling weight in the training mix.")

    @model_validator(mode="after")
    def _check(self) -> OnPolicyConfig:
        if any(p.split != "train" for p in [self.prompts, *self.extra_prompts]):
            raise ValueError("prompts.split must be 'train' (eval prompts are held out)")
        return self


class DatasetSourceConfig(StrictModel):
    """Existing tokenised data (the CPT/SFT pipelines' parquet output) as distillation text."""

    path: str = Field(description="Folder or file of parquet rows with an 'input_ids' column.")
    weight: float = Field(default=1.0, gt=0, description="Sampling weight in the training mix.")
    max_rows: int | None = Field(default=None, ge=1, description="Take at most this many rows.")


class LossConfig(StrictModel):
    """The distillation objective (see soaes.train.losses)."""

    name: Literal["forward_kl", "reverse_kl", "jsd", "tvd"] = Field(
        default="forward_kl", description="Divergence between teacher and student distributions."
    )
    temperature: float = Field(default=1.0, gt=0, description="Softening temperature of both.")
    top_k: int | None = Field(
        default=None, ge=1, description="Restrict the divergence to the teacher's top-k tokens."
    )
    beta: float = Field(default=0.5, gt=0, lt=1, description="JSD's teacher weight β.")
    ce_weight: float = Field(
        default=0.0, ge=0, le=1, description="Share of cross-entropy on the text's own tokens."
    )


class AcceptanceConfig(StrictModel):
    """How acceptance and speed of target + draft are measured with vLLM."""

    prompts: PromptsConfig = Field(description="Held-out domain prompts (use split 'eval').")
    max_tokens: int = Field(default=64, ge=1, description="Greedy tokens generated per prompt.")
    num_speculative_tokens: list[int] = Field(
        default=[1, 2, 3, 4], min_length=1, description="Values of k to measure."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Prompts decoded together; null: all at once (throughput); 1: single "
        "stream (latency, where speculation helps most).",
    )
    measure_speed: bool = Field(
        default=True,
        description="Also time the target alone and the draft alone (for c and the speed-ups).",
    )
    repetitions: int = Field(
        default=3, ge=1, description="Per-step measurements: repetitions per setting."
    )
    served_batch: int = Field(
        default=8, ge=1, description="Per-step measurements: the batch served (prompts at once)."
    )
    single_stream_prompts: int = Field(
        default=4, ge=1, description="Per-step measurements: prompts decoded alone (batch 1)."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="vLLM engine settings.")

    @model_validator(mode="after")
    def _check(self) -> AcceptanceConfig:
        if self.prompts.split != "eval":
            raise ValueError("prompts.split must be 'eval' (held out from distillation)")
        if any(k < 1 for k in self.num_speculative_tokens):
            raise ValueError("num_speculative_tokens values must be >= 1")
        return self


class Eagle3Config(StrictModel):
    """An EAGLE-3 head for the target, trained on the distillation rows (soaes.train.eagle3)."""

    aux_layers: list[int] | None = Field(
        default=None,
        description="Target layer ids whose input states feed the head (low, mid, high); "
        "null: vLLM's default (2, n//2, n-3), or (1, n//2, n-1) below 8 layers.",
    )
    draft_vocab_size: int | None = Field(
        default=None,
        ge=2,
        description="Reduced output vocabulary (the most generated target tokens, with d2t/t2d "
        "maps); null: the target's whole vocabulary.",
    )
    ttt_steps: int = Field(
        default=2, ge=1, le=5, description="Draft steps unrolled in training (training-time test)."
    )
    steps: int = Field(default=200, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=8, ge=1, description="Rows per step.")
    lr: float = Field(default=1e-3, gt=0, description="AdamW learning rate (after warm-up).")
    warmup_steps: int = Field(default=10, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Decay after warm-up, to min_lr_ratio at the last step."
    )
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final LR as a share of lr.")
    seed: int = Field(default=0, description="Initialisation and sampling seed.")


class DistillDataSpec(StrictModel):
    """Distillation text: on-policy generations and/or existing tokenised data, mixed."""

    onpolicy: OnPolicyConfig | None = Field(
        default=None, description="Generate continuations of domain prompts with vLLM."
    )
    datasets: list[DatasetSourceConfig] = Field(
        default_factory=list, description="CPT/SFT pipeline outputs to distil on as well."
    )
    max_len: int = Field(default=512, ge=8, description="Rows are cut to this many tokens.")
    eval_rows: int = Field(default=16, ge=1, description="Rows held out for the held-out KL.")
    seed: int = Field(default=0, description="Seed of the mixing sample and the held-out split.")

    @model_validator(mode="after")
    def _check(self) -> DistillDataSpec:
        if self.onpolicy is None and not self.datasets:
            raise ValueError("set onpolicy and/or datasets: there is no distillation text")
        return self


class DistillConfig(StrictModel):
    """Pipeline ``distill``: build a draft, distil it toward the target, measure acceptance.

    Stages (each skipped when its output exists): draft construction -> distillation data
    (on-policy generation, offline teacher scores) -> Ray Train + DeepSpeed distillation ->
    vLLM acceptance of the undistilled and distilled draft -> ``spec_decode.json``.
    """

    kind: Literal["distill"] = Field(default="distill", description="Pipeline kind.")
    name: str = Field(description="Run name.")
    output_dir: str = Field(
        description="Run folder: draft_init/, data/, checkpoints/, hf/ (the distilled draft), "
        "acceptance.json, spec_decode.json."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    target: ModelRef = Field(description="The frozen target (teacher).")
    draft: DraftConfig = Field(description="How the draft (student) is built.")
    data: DistillDataSpec = Field(description="Distillation text.")
    teacher: Literal["online", "offline"] = Field(
        default="online",
        description="online: the target runs beside the student on every worker; offline: its "
        "top-k log-probs are computed once (vLLM logprobs for on-policy text, a Ray Data job "
        "otherwise) and stored, for a target too big to sit beside the student.",
    )
    loss: LossConfig = Field(default_factory=LossConfig, description="Distillation objective.")
    generation: EngineConfig = Field(
        default_factory=EngineConfig, description="vLLM engine of the on-policy generator."
    )
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Ray Train workers.")
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec, description="DeepSpeed engine.")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="Optimizer and LR schedule.")
    micro_batch_size: int = Field(
        default=4, ge=1, description="Sequences per worker per micro-step."
    )
    grad_accum_steps: int = Field(default=1, ge=1, description="Micro-steps per optimizer step.")
    epochs: float = Field(
        default=1.0, gt=0, description="Passes over the data (if max_steps is null)."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps; overrides epochs."
    )
    pad_to_multiple: int = Field(
        default=8, ge=1, description="Pad batch length to a multiple of this."
    )
    seed: int = Field(default=0, description="Seed of weights-independent randomness.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpointing.")
    fault: FaultSpec = Field(default_factory=FaultSpec, description="Fault tolerance.")
    logging: LoggingSpec = Field(default_factory=LoggingSpec, description="Metrics and evaluation.")
    acceptance: AcceptanceConfig | None = Field(
        default=None, description="Measure acceptance of the undistilled and distilled draft."
    )
    eagle3: Eagle3Config | None = Field(
        default=None,
        description="Also train an EAGLE-3 head for the target on the same rows -> eagle3/.",
    )

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        if self.teacher == "offline" and self.loss.top_k is None:
            raise ValueError("teacher 'offline' stores top-k log-probs: set loss.top_k")
        if self.teacher == "offline" and self.loss.temperature != 1.0:
            raise ValueError(
                "teacher 'offline' scores are at temperature 1: set loss.temperature 1"
            )
        if not self.scaling.use_gpu and self.deepspeed.precision != "fp32":
            raise ValueError(
                f"deepspeed.precision {self.deepspeed.precision!r} needs "
                "scaling.use_gpu: CPU training runs in fp32"
            )
        check_fail_rank(self.fault.fail_at_step, self.fault.fail_rank, self.scaling.num_workers)
        global_batch = self.micro_batch_size * self.scaling.num_workers
        if self.data.eval_rows < global_batch:
            raise ValueError(
                f"data.eval_rows {self.data.eval_rows} < micro_batch_size x "
                f"num_workers ({global_batch}): the held-out KL would be empty"
            )
        if not self.checkpoint.export_hf:
            raise ValueError("checkpoint.export_hf must be true: hf/ is the distilled draft")
        return self
