"""Config of the ``eval`` pipeline: domain Q&A, MMLU retention, held-out perplexity, report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from soaes.config.base import StrictModel
from soaes.config.common import RayConfig
from soaes.config.inference import EngineConfig

PPL_TEXT_SOURCES = ("laws", "peoples_daily", "shakespeare", "fortunes_zh")


class EvalModelConfig(StrictModel):
    """One model to evaluate, under a short name used in the report."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Label, e.g. 'base' or 'cpt_sft'.")
    path: str = Field(description="Preset handle (e.g. 'tiny/target'), HF folder or hub id.")
    tokenizer: str | None = Field(
        default=None, description="Tokenizer when not in the model folder."
    )
    trust_remote_code: bool = Field(default=False, description="Allow custom modelling code.")
    tasks: list[Literal["qa", "mmlu", "perplexity"]] = Field(
        default=["qa", "mmlu", "perplexity"],
        min_length=1,
        description="What to measure for this model (e.g. SFT arms need only 'qa', the CPT "
        "arms 'mmlu' and 'perplexity').",
    )


class QASetConfig(StrictModel):
    """A held-out Q&A set: a jsonl with ``question``/``answer`` lines, or a built-in sample.

    Lines may also carry ``id``, ``cluster`` (source document), ``scoring`` (``overlap`` or
    ``article_id`` with ``law`` and ``article_no``) and ``seen_in_training``: the format of
    ``<data_sft out>/eval_sets/<set>.jsonl``. Each set is reported on its own.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Label of the set in the report.")
    path: str | None = Field(
        default=None, description="jsonl file (e.g. <sft dir>/<stage>/test/qa.jsonl)."
    )
    builtin: Literal["laws_articles"] | None = Field(
        default=None,
        description="Built-in sample: 'laws_articles' asks what an article of a law provides "
        "(a smoke-test set; it may overlap SFT training data).",
    )
    limit: int | None = Field(default=None, ge=1, description="Score only the first N valid items.")
    seed: int = Field(default=0, description="Seed of the built-in sample.")

    @model_validator(mode="after")
    def _one_source(self) -> QASetConfig:
        if (self.path is None) == (self.builtin is None):
            raise ValueError("set exactly one of path or builtin")
        if self.builtin and not self.limit:
            raise ValueError("limit is required for a builtin set (its size)")
        return self


# Engine keys a `generation` block may still set directly (before `engine` existed).
_LEGACY_ENGINE_KEYS = ("max_model_len", "dtype", "enforce_eager", "engine_kwargs")


class GenerationConfig(StrictModel):
    """Greedy generation with vLLM for the Q&A sets."""

    max_new_tokens: int = Field(default=128, ge=1, description="Tokens generated per answer.")
    system_prompt: str | None = Field(default=None, description="Optional system message.")
    engine: EngineConfig = Field(
        default_factory=lambda: EngineConfig(max_model_len=2048),
        description="The vLLM engine (max_model_len 2048 unless set).",
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_keys(cls, data: Any) -> Any:
        # The eval engine's context defaults to 2048; `generation: {max_model_len: 512}` (the
        # engine keys set directly, as before `engine` existed) still loads.
        if not isinstance(data, dict):
            return data
        legacy = set(_LEGACY_ENGINE_KEYS) & set(data)
        engine = data.get("engine", {})
        if not isinstance(engine, dict):  # an EngineConfig instance
            if legacy:
                raise ValueError(f"set {sorted(legacy)} inside engine")
            return data
        both = sorted(legacy & set(engine))
        if both:
            raise ValueError(f"{both} set both in generation and in generation.engine")
        rest = {k: v for k, v in data.items() if k not in legacy}
        merged = {"max_model_len": 2048, **engine, **{k: data[k] for k in legacy}}
        return {**rest, "engine": merged}


class MMLUConfig(StrictModel):
    """MMLU by option log-likelihood on a fixed subject-stratified subset."""

    enabled: bool = Field(default=True, description="Run MMLU.")
    n_per_subject: int = Field(default=5, ge=1, description="Questions per subject (57 subjects).")
    seed: int = Field(default=0, description="Seed of the subset.")
    scoring: Literal["option", "letter"] = Field(
        default="option",
        description="'option': log p(option text | question); 'letter': log p(' A'..' D' | "
        "question with listed options).",
    )
    path: str | None = Field(default=None, description="mmlu.jsonl (default: the 'mmlu' asset).")


class PerplexitySetConfig(StrictModel):
    """Held-out text for perplexity: the tail of a built-in source, or CPT validation blocks."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Label, e.g. 'general_zh'.")
    group: Literal["domain", "general"] = Field(description="Which side of CPT this set measures.")
    source: Literal[PPL_TEXT_SOURCES] | None = Field(
        default=None, description="Built-in text source; its last max_docs documents are used."
    )
    validation_dir: str | None = Field(
        default=None, description="Folder of packed parquet blocks (data_cpt validation/<group>)."
    )
    ids_column: str = Field(default="input_ids", description="Token-id column of the blocks.")
    max_docs: int = Field(default=64, ge=1, description="Documents (or blocks) scored.")

    @model_validator(mode="after")
    def _one_source(self) -> PerplexitySetConfig:
        if (self.source is None) == (self.validation_dir is None):
            raise ValueError("set exactly one of source or validation_dir")
        return self


class RetentionConfig(StrictModel):
    """Which model is 'before', and the bootstrap of after/before ratios."""

    baseline: str | None = Field(
        default=None, description="Reference model name (default: the first)."
    )
    n_boot: int = Field(default=1000, ge=100, description="Paired bootstrap resamples.")
    seed: int = Field(default=0, description="Bootstrap seed.")
    ci: float = Field(default=0.95, gt=0, lt=1, description="Confidence level of the interval.")


class RolesConfig(StrictModel):
    """Model names that play the paper's ablation arms (each optional)."""

    cpt_before: str | None = Field(
        default=None, description="Model before CPT (general retention)."
    )
    cpt_after: str | None = Field(default=None, description="Model after CPT.")
    base_sft: str | None = Field(
        default=None, description="Base model + SFT (downstream baseline)."
    )
    cpt_sft: str | None = Field(default=None, description="CPT model + SFT.")
    single_stage: str | None = Field(default=None, description="Single-stage SFT model.")
    progressive: str | None = Field(default=None, description="Progressive SFT model.")
    qa_set: str | None = Field(default=None, description="Q&A set of the downstream comparisons.")


class ReportInputsConfig(StrictModel):
    """Results of other stages to show in the report (missing files render as 'not run')."""

    title: str | None = Field(default=None, description="Report title (default from the run name).")
    speculative: str | None = Field(
        default=None,
        description="JSON of the distilled draft's acceptance measurement (measure_acceptance "
        "summary or spec_decode.json: rows of k, acceptance, per-position, speed-up).",
    )
    speculative_undistilled: str | None = Field(
        default=None, description="The same measurement for the undistilled draft."
    )
    speculative_eagle3: str | None = Field(
        default=None, description="The same measurement for the EAGLE-3 head."
    )
    speculative_choice: str | None = Field(
        default=None,
        description="The distill stage's acceptance.json: its 'served' names the candidate "
        "chosen by measurement (distilled, undistilled or eagle3), which the headline quotes.",
    )
    serving: str | None = Field(
        default=None, description="JSON written by `soaes bench serve --out` (serving section)."
    )
    loss_curves: dict[str, str] = Field(
        default_factory=dict, description="Label -> metrics.jsonl of a training run."
    )
    train_runs: dict[str, str] = Field(
        default_factory=dict,
        description="Model name -> its SFT run folder (summary.json + <stage>/data_seen.json), "
        "for the parity table of each ablation.",
    )


_QA_ROLES = ("base_sft", "cpt_sft", "single_stage", "progressive")


class EvalConfig(StrictModel):
    """Pipeline ``eval``: score models on Q&A sets, MMLU and perplexity, write a report."""

    kind: Literal["eval"] = Field(default="eval", description="Pipeline kind.")
    name: str = Field(description="Run name.")
    output_dir: str = Field(description="Where per-model results, results.json and the report go.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    models: list[EvalModelConfig] = Field(min_length=1, description="Models to evaluate.")
    qa: list[QASetConfig] = Field(default_factory=list, description="Q&A sets (vLLM generation).")
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="vLLM settings."
    )
    mmlu: MMLUConfig = Field(default_factory=MMLUConfig, description="MMLU retention.")
    perplexity: list[PerplexitySetConfig] = Field(
        default_factory=list, description="Perplexity sets."
    )
    ppl_max_len: int = Field(
        default=512, ge=8, description="Tokens per perplexity document (truncated)."
    )
    lm_batch_size: int = Field(default=4, ge=1, description="Sequences per transformers forward.")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="Retention CI.")
    roles: RolesConfig = Field(
        default_factory=RolesConfig, description="Ablation arms for the report."
    )
    report: ReportInputsConfig = Field(
        default_factory=ReportInputsConfig, description="Other stages' results for the report."
    )
    reuse_results: bool = Field(
        default=True,
        description="Skip a model whose files, items and settings are unchanged since its last "
        "evaluation in output_dir (its saved results are used).",
    )
    task_num_cpus: float = Field(
        default=2,
        gt=0,
        description="CPUs of each model's Ray eval task (Ray sets OMP_NUM_THREADS, i.e. torch's "
        "threads, to this).",
    )
    task_num_gpus: float = Field(default=0, ge=0, description="GPUs of each model's Ray eval task.")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be unique, got {names}")
        for label, items in (("qa", self.qa), ("perplexity", self.perplexity)):
            set_names = [s.name for s in items]
            if len(set(set_names)) != len(set_names):
                raise ValueError(f"{label}: set names must be unique, got {set_names}")
        if self.retention.baseline and self.retention.baseline not in names:
            raise ValueError(
                f"retention.baseline {self.retention.baseline!r} is not in models {names}"
            )
        for role, value in self.roles.model_dump().items():
            pool = [q.name for q in self.qa] if role == "qa_set" else names
            if value is not None and value not in pool:
                raise ValueError(f"roles.{role}: {value!r} is not one of {pool}")
            if role == "qa_set" or value is None:
                continue
            tasks = next(m.tasks for m in self.models if m.name == value)
            need = {"qa"} if role in _QA_ROLES else {"mmlu", "perplexity"}
            if not need & set(tasks):
                raise ValueError(
                    f"roles.{role}: model {value!r} has tasks {tasks}, needs one of {sorted(need)}"
                )
        return self
