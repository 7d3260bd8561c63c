"""The typed results of an evaluation run: what the report renders and ``report.json`` holds.

Every number the report prints lives in one of these models; the sections
(:mod:`soaes.report.sections`) read them, never raw dicts. Inputs written by other stages
(acceptance measurements, the serve benchmark) keep their extra fields (``extra="allow"``)
so ``report.json`` carries them through.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """Strict, immutable base; NaN/inf are written to JSON as NaN/Infinity (json reads them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class Open(BaseModel):
    """Base of inputs produced by other stages: unknown fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True, ser_json_inf_nan="constants")


class Ratio(Frozen):
    """after/before of one measure on the same items, with its clustered interval."""

    metric: str = Field(description="Measure, e.g. 'jieba rouge-1' or 'mmlu p(correct)'.")
    before: float = Field(description="Reference arm's value.")
    after: float = Field(description="Compared arm's value.")
    ratio: float = Field(description="after / before (NaN when before is 0).")
    low: float = Field(description="Lower end of the interval.")
    high: float = Field(description="Upper end of the interval.")
    n: int = Field(description="Items.")
    n_clusters: int = Field(description="Independent clusters (source documents) resampled.")
    ci: float = Field(description="Coverage of the interval.")
    convention: str = Field(description="How the interval was computed.")
    verdict: str = Field(description="gain / loss / no effect detected / uninformative / ...")
    lower_is_better: bool = Field(default=False, description="True for perplexity.")


class Diagnostics(Frozen):
    """What one model's answers to one set look like."""

    n: int = Field(description="Answers.")
    max_new_tokens: int = Field(description="Generation cap in tokens.")
    mean_tokens: float = Field(description="Mean answer length in tokens.")
    share_truncated: float = Field(description="Share cut at the token cap.")
    share_empty: float = Field(description="Share empty.")
    share_eos: float = Field(description="Share ended by EOS (finish_reason 'stop').")
    share_repeat_question: float = Field(description="Share containing the whole question.")
    share_loop: float = Field(description="Share with a 4-gram repeated 3+ times.")


class SetScores(Frozen):
    """One model's aggregate scores on one Q&A set."""

    source: str = Field(description="File (or built-in) the items came from.")
    scoring: Literal["overlap", "article_id"] = Field(description="How items are scored.")
    n_items: int = Field(description="Items scored.")
    n_clusters: int = Field(description="Source clusters among them.")
    n_malformed: int = Field(description="Input lines skipped as malformed.")
    n_seen_in_training: int | None = Field(
        description="Items whose answer is in a training corpus (None: not stated)."
    )
    scores: dict[str, dict[str, float]] = Field(description="convention -> metric -> value.")
    diagnostics: Diagnostics = Field(description="Answer-shape diagnostics.")


class MMLUScores(Frozen):
    """MMLU on the fixed subset, with the accuracy's interval against chance."""

    n: int = Field(description="Questions in the subset.")
    accuracy: float = Field(description="Share correct.")
    accuracy_low: float = Field(description="Interval of the accuracy (low).")
    accuracy_high: float = Field(description="Interval of the accuracy (high).")
    p_correct: float = Field(description="Mean probability of the correct option.")
    scoring: str = Field(description="'option' or 'letter'.")
    at_chance: bool = Field(description="The accuracy interval includes 25%.")


class Perplexity(Frozen):
    """Perplexity on one held-out set."""

    group: Literal["domain", "general"] = Field(description="Side of CPT it measures.")
    ppl: float = Field(description="Token-weighted perplexity.")
    n_docs: int = Field(description="Documents or blocks.")
    n_tokens: int = Field(description="Tokens scored.")


class ModelResult(Frozen):
    """One evaluated model (or the echo pseudo-model)."""

    path: str = Field(description="Checkpoint path or preset ('echo' for the baseline).")
    seconds: float = Field(description="Evaluation time.")
    qa: dict[str, SetScores] = Field(description="Q&A set -> scores.")
    mmlu: MMLUScores | None = Field(description="MMLU, when measured.")
    perplexity: dict[str, Perplexity] = Field(description="Held-out set -> perplexity.")


class DomainRow(Frozen):
    """A model's line in a set's table: its main score, answer shape and flags."""

    model: str = Field(description="Model name ('echo': the question as the answer).")
    role: Literal["arm", "base", "echo"] = Field(description="Arm, untouched base, or echo.")
    score: float = Field(description="The set's main measure.")
    diagnostics: Diagnostics = Field(description="Answer shape.")
    flags: list[str] = Field(description="e.g. 'below echo', 'below its start (cpt)'.")


class DomainSet(Frozen):
    """One Q&A set reported on its own, every model beside the trivial baselines."""

    name: str = Field(description="Set name.")
    disclosure: str = Field(description="'recall (answers seen in training)', 'withheld', ...")
    main_metric: str = Field(description="The measure in the score column.")
    n_items: int = Field(description="Items.")
    n_clusters: int = Field(description="Source clusters.")
    rows: list[DomainRow] = Field(description="Models, echo and base included.")


class Sample(Frozen):
    """One item with every model's prediction beside the reference."""

    set: str = Field(description="Set name.")
    item_id: str = Field(description="Item id.")
    question: str = Field(description="Question.")
    reference: str = Field(description="Reference answer.")
    predictions: dict[str, str] = Field(description="Model -> prediction.")


class ParitySource(Frozen):
    """What one arm saw of one data source."""

    source: str = Field(description="Data source (SFT data stage).")
    examples: float = Field(description="Examples seen.")
    tokens: float = Field(description="Tokens seen.")
    peak_lr: float = Field(description="Peak LR of the stage that trained on it.")
    schedule: str = Field(description="LR schedule of that stage.")


class ParityArm(Frozen):
    """One arm of an ablation, from its training run's outputs."""

    model: str = Field(description="Model name in the eval.")
    run_dir: str = Field(description="Training output folder.")
    start: str = Field(description="Starting checkpoint.")
    steps: int = Field(description="Optimizer steps, all stages.")
    sources: list[ParitySource] = Field(description="Per data source.")


class Parity(Frozen):
    """The parity table of one comparison and whether the arms are comparable."""

    arms: list[ParityArm] = Field(description="Both arms.")
    tolerance: str = Field(description="What counts as parity.")
    comparable: bool = Field(description="Arms within tolerance.")
    reasons: list[str] = Field(description="Where they differ beyond it.")


class Comparison(Frozen):
    """An ablation: after vs before on every shared Q&A set, with parity."""

    key: str = Field(description="'cpt_downstream' or 'progressive'.")
    label: str = Field(description="Human title.")
    before: str = Field(description="Reference arm.")
    after: str = Field(description="Compared arm.")
    cells: dict[str, list[Ratio]] = Field(description="Set -> ratio cells.")
    parity: Parity | None = Field(description="Parity table (None: training runs not given).")


class Retention(Frozen):
    """General ability of a model against the baseline: MMLU and perplexity ratios."""

    model: str = Field(description="Compared model.")
    baseline: str = Field(description="Reference model.")
    cells: list[Ratio] = Field(description="Every measure.")
    headline: Ratio | None = Field(description="Most sensitive informative measure (named).")


class Claim(Frozen):
    """A claim of the paper beside ours."""

    claim: str = Field(description="The claim.")
    paper: str = Field(description="The paper's figure.")
    ours: str = Field(description="Our figure with its interval.")
    verdict: str = Field(description="What our figure says about it.")
    value: float | bool | None = Field(description="Our point value.")
    min_detectable: float | None = Field(
        default=None,
        description="Smallest ratio above 1 the interval detects with ~80% power (None: no CI).",
    )
    powered: bool | None = Field(
        default=None,
        description="The interval excludes 1, or it could have detected the paper's effect "
        "(min_detectable <= the paper's ratio); None where no interval applies.",
    )


class StageTime(Frozen):
    """Wall time of one recipe stage, as the run that produced the report recorded it."""

    stage: str = Field(description="Stage name.")
    status: str = Field(description="'ran' or 'skipped' (finished in an earlier invocation).")
    seconds: float | None = Field(description="Wall time of the invocation that ran it.")


class AcceptanceRow(Open):
    """One k of an acceptance measurement."""

    k: int = Field(description="Drafted tokens.")
    acceptance_rate: float | None = Field(default=None, description="Share accepted.")
    mean_acceptance_length: float | None = Field(default=None, description="Tokens per step.")
    per_position: list[float] = Field(default_factory=list, description="By draft position.")
    speedup_measured: float | None = Field(default=None, description="Measured speed-up.")
    speedup_theoretical: float | None = Field(default=None, description="Bound.")
    outputs_identical: bool | None = Field(default=None, description="Greedy outputs equal.")


class Acceptance(Open):
    """An acceptance measurement (measure_acceptance summary or spec_decode.json)."""

    target: str | None = Field(default=None, description="Target model.")
    draft: str | None = Field(default=None, description="Draft model.")
    num_prompts: int | None = Field(default=None, description="Prompts measured.")
    max_tokens: int | None = Field(default=None, description="Tokens per prompt.")
    best_k: int | None = Field(default=None, description="Best k.")
    num_speculative_tokens: int | None = Field(default=None, description="k when one.")
    c: float | None = Field(default=None, description="Draft/target step-cost ratio.")
    rows: list[AcceptanceRow] = Field(default_factory=list, description="Per k.")


class Speculative(Frozen):
    """Speculative decoding: every candidate measured, and the one chosen to be served."""

    distilled: Acceptance | None = Field(default=None, description="Distilled draft.")
    undistilled: Acceptance | None = Field(default=None, description="Undistilled draft.")
    eagle3: Acceptance | None = Field(default=None, description="EAGLE-3 head.")
    served: str | None = Field(
        default=None, description="Candidate chosen by measurement (a field name above)."
    )

    def candidates(self) -> dict[str, Acceptance]:
        """The measured candidates with rows, by name."""
        named = {
            "distilled": self.distilled,
            "undistilled": self.undistilled,
            "eagle3": self.eagle3,
        }
        return {k: v for k, v in named.items() if v is not None and v.rows}

    def served_name(self) -> str:
        """The served candidate's name (the distilled draft when none was recorded)."""
        return self.served if self.served in self.candidates() else "distilled"


class ServingSingle(Open):
    """Single-stream part of ``soaes bench serve``."""

    prompts: int | None = Field(default=None, description="Prompts.")
    max_tokens: int | None = Field(default=None, description="Tokens per prompt.")
    tokens_per_s: dict[str, float] = Field(default_factory=dict, description="Path -> tok/s.")
    identical_outputs_all_four: bool | None = Field(default=None, description="All equal.")
    speedup_spec_vs_plain_http: float | None = Field(default=None, description="HTTP speed-up.")
    speedup_spec_vs_plain_inproc: float | None = Field(default=None, description="In-process.")
    serve_overhead_http_vs_inproc: float | None = Field(default=None, description="With draft.")
    serve_overhead_plain: float | None = Field(default=None, description="Without draft.")


class ServingLoad(Open):
    """Load part of ``soaes bench serve``."""

    requests: int | None = Field(default=None, description="Requests sent.")
    by_status: dict[str, int] = Field(default_factory=dict, description="HTTP status counts.")
    tokens_per_s: float | None = Field(default=None, description="Throughput.")
    latency_p50_s: float | None = Field(default=None, description="Latency p50.")
    latency_p99_s: float | None = Field(default=None, description="Latency p99.")
    ttft_p50_s: float | None = Field(default=None, description="TTFT p50.")
    ttft_p99_s: float | None = Field(default=None, description="TTFT p99.")
    acceptance: dict[str, float] = Field(default_factory=dict, description="Acceptance stats.")
    no_replica_died: bool = Field(default=True, description="No replica died.")


class Serving(Open):
    """``soaes bench serve --out`` JSON."""

    k: int | None = Field(default=None, description="Drafted tokens.")
    concurrency: int | None = Field(default=None, description="Load concurrency.")
    single_stream: ServingSingle | None = Field(default=None, description="Single stream.")
    load: ServingLoad | None = Field(default=None, description="Under load.")


LossCurves = dict[str, dict[str, list[tuple[float, float]]]]


class Results(Frozen):
    """Everything the report shows."""

    title: str = Field(description="Report title.")
    created: str = Field(description="Creation time (UTC).")
    profile: str | None = Field(default=None, description="Profile name.")
    config_hash: str | None = Field(default=None, description="Hash of the eval config.")
    models: dict[str, ModelResult] = Field(default_factory=dict, description="Per model.")
    domain: list[DomainSet] = Field(default_factory=list, description="Per Q&A set.")
    samples: list[Sample] = Field(default_factory=list, description="Predictions side by side.")
    retention: list[Retention] = Field(default_factory=list, description="Against the baseline.")
    cpt_retention: Retention | None = Field(default=None, description="CPT after vs before.")
    comparisons: list[Comparison] = Field(default_factory=list, description="Ablations.")
    speculative: Speculative = Field(default_factory=Speculative, description="Spec decode.")
    serving: Serving | None = Field(default=None, description="Serve benchmark.")
    loss_curves: LossCurves = Field(default_factory=dict, description="Run -> series.")
    headline: list[Claim] = Field(default_factory=list, description="Paper vs ours.")
    note: str | None = Field(
        default=None, description="The run's own caveat, shown under the title (e.g. not powered)."
    )
    stages: list[StageTime] = Field(
        default_factory=list, description="Recipe stages and their wall times (recipe runs only)."
    )
