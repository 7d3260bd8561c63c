"""Configs of the Ray Data pipelines: CPT corpus (clean, dedup, mix, pack) and SFT curriculum."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from soaes.config.base import StrictModel
from soaes.config.common import RayConfig

BUILTIN_TEXT_SOURCES = ("laws", "peoples_daily", "shakespeare", "fortunes_zh")


class SourceConfig(StrictModel):
    """One corpus: a built-in source of DATA.md or a user file/folder."""

    name: str = Field(description="Source name (a built-in name, or any label for a user file).")
    group: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Mixing group this source belongs to, e.g. 'domain' or 'general' (a folder name).",
    )
    path: str | None = Field(default=None, description="File/folder/SQLite db for user sources.")
    format: Literal["builtin", "jsonl", "parquet", "text_lines", "text_files", "sqlite"] = Field(
        default="builtin", description="How to read the source."
    )
    text_field: str = Field(default="text", description="Field/column holding the document text.")
    id_field: str | None = Field(default=None, description="Field with a stable document id.")
    sql: str | None = Field(
        default=None, description="Query for sqlite sources (returns the text field)."
    )
    max_docs: int | None = Field(
        default=None, ge=1, description="Keep at most this many documents."
    )
    laws: list[str] | None = Field(
        default=None,
        description="Built-in 'laws' only: keep only articles of these laws (exact law_name values "
        "of laws.db); null: every law in force. The pipeline's withheld_laws always win.",
    )

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.laws is not None and (self.format != "builtin" or self.name != "laws"):
            raise ValueError("laws (an include list) applies only to the built-in 'laws' source")
        if self.format == "builtin" and self.name not in BUILTIN_TEXT_SOURCES:
            raise ValueError(
                f"name {self.name!r} is not a built-in source {BUILTIN_TEXT_SOURCES}; "
                "set format and path for a user source"
            )
        if self.format != "builtin" and not self.path:
            raise ValueError(f"path is required for format {self.format!r}")
        if self.format == "sqlite" and not (self.sql and self.id_field):
            raise ValueError(
                "sql and id_field (a unique column, e.g. `rowid AS id`) are required "
                "for format 'sqlite'"
            )
        return self


class CleanConfig(StrictModel):
    """Normalisation and quality filters (each drop is counted by reason)."""

    min_chars: int = Field(default=10, ge=0, description="Drop documents shorter than this.")
    max_chars: int = Field(
        default=100_000, ge=1, description="Quarantine documents longer than this."
    )
    min_script_ratio: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Drop documents whose share of CJK+Latin letters/digits is below this.",
    )


class DedupConfig(StrictModel):
    """Exact (content hash) and near-duplicate (MinHash + LSH) dedup across all sources."""

    exact: bool = Field(default=True, description="Remove exact duplicates (after normalisation).")
    near: bool = Field(default=True, description="Remove near duplicates with MinHash LSH.")
    num_perm: int = Field(default=128, ge=16, description="MinHash permutations.")
    bands: int = Field(default=32, ge=1, description="LSH bands (num_perm must divide evenly).")
    shingle_chars: int = Field(default=5, ge=1, description="Character shingle size.")
    threshold: float = Field(
        default=0.8, gt=0, le=1, description="Jaccard estimate that counts as duplicate."
    )

    @model_validator(mode="after")
    def _check(self) -> DedupConfig:
        if self.num_perm % self.bands:
            raise ValueError(
                f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})"
            )
        return self


class MixConfig(StrictModel):
    """Token-ratio mixing of groups (the domain:general 'replay' ratio)."""

    ratio: dict[str, float] = Field(
        description="Group -> relative token weight, e.g. {domain: 1, general: 1}."
    )
    total_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Tokens out in all; null: as many as the scarcest group allows without upsampling.",
    )
    seed: int = Field(default=0, description="Seed of the deterministic sampling order.")

    @model_validator(mode="after")
    def _check(self) -> MixConfig:
        if not self.ratio or any(w <= 0 for w in self.ratio.values()):
            raise ValueError("ratio needs at least one group with a positive weight")
        return self


class DataCPTConfig(StrictModel):
    """Pipeline ``data_cpt``: sources -> clean -> dedup -> tokenize -> mix -> pack -> parquet shards."""

    kind: Literal["data_cpt"] = Field(default="data_cpt", description="Pipeline kind.")
    name: str = Field(description="Run name.")
    output_dir: str = Field(description="Where shards, manifest and quarantine are written.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    tokenizer: str = Field(description="Tokenizer handle or folder (e.g. 'tiny/tokenizer').")
    sources: list[SourceConfig] = Field(min_length=1, description="Corpora to read.")
    withheld_laws: list[str] = Field(
        default_factory=list,
        description="Laws (exact law_name values of laws.db) kept out of the built-in 'laws' "
        "source entirely, whatever its include list: the withheld-law eval measures beyond recall.",
    )
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning and filters.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Dedup settings.")
    mix: MixConfig = Field(description="Mixing ratio by group.")
    seq_len: int = Field(default=512, ge=8, description="Tokens per packed block.")
    reset_position_ids: bool = Field(
        default=True, description="Restart position ids at each document inside a packed block."
    )
    validation_fraction: float = Field(
        default=0.02, ge=0, lt=0.5, description="Share of documents held out (per group) for eval."
    )
    rows_per_shard: int = Field(default=2000, ge=1, description="Packed blocks per parquet shard.")
    docs_per_block: int = Field(
        default=1000,
        ge=1,
        description="Documents per Ray Data block before cleaning/tokenising (the unit of parallel work).",
    )
    shuffle: Literal["sort", "hash"] = Field(
        default="sort",
        description="Ray Data shuffle for dedup grouping and sharding: 'sort' (task-based, low fixed "
        "cost on small machines) or 'hash' (actor-based, for large clusters).",
    )
    keep_work: bool = Field(
        default=False, description="Keep the intermediate _work/ folder (debugging)."
    )

    @model_validator(mode="after")
    def _check(self) -> DataCPTConfig:
        groups = {s.group for s in self.sources}
        missing = set(self.mix.ratio) - groups
        if missing:
            raise ValueError(f"mix.ratio names groups with no source: {sorted(missing)}")
        unmixed = sorted(groups - set(self.mix.ratio))
        if unmixed:
            raise ValueError(f"sources use groups missing from mix.ratio: {unmixed}")
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sources: names must be unique, repeated: {dup}")
        return self


class SFTSourceConfig(StrictModel):
    """A conversation source for SFT: a built-in builder or a user jsonl of messages."""

    name: Literal[
        "chatterbot_zh",
        "chatterbot_en",
        "chitchat",
        "laws_qa",
        "insuranceqa_zh",
        "insuranceqa_en",
        "jsonl",
    ] = Field(description="Builder name.")
    path: str | None = Field(
        default=None, description="For 'jsonl': file with {'messages': [...]} lines."
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Multiplier on the source's train examples: 2 repeats each twice, 0.5 keeps a seeded half.",
    )
    max_examples: int | None = Field(
        default=None,
        ge=1,
        description="Cap on examples taken (a seeded sample of source documents).",
    )
    laws: list[str] | None = Field(
        default=None,
        description="laws_qa only: build questions only for these laws (exact law_name values of "
        "laws.db); null: every law in force. The pipeline's withheld_laws always win.",
    )

    @model_validator(mode="after")
    def _check(self) -> SFTSourceConfig:
        if self.name == "jsonl" and not self.path:
            raise ValueError("path is required for the 'jsonl' source")
        if self.laws is not None and self.name != "laws_qa":
            raise ValueError("laws (an include list) applies only to the 'laws_qa' source")
        return self

    @property
    def label(self) -> str:
        """The name counts are reported under (a jsonl source is named by its file)."""
        return f"jsonl:{self.path}" if self.name == "jsonl" else self.name


class SFTStageConfig(StrictModel):
    """One curriculum stage."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", description="Stage name, e.g. 'stage1_chat' (a folder name)."
    )
    sources: list[SFTSourceConfig] = Field(min_length=1, description="Conversation sources.")
    epochs: float = Field(
        default=1.0, gt=0, description="Passes over the stage data (used by training)."
    )


EVAL_SET_NAMES = ("law_recall", "law_withheld", "scenario_article", "insurance_zh")


class EvalSetsConfig(StrictModel):
    """Leak-free domain eval sets written beside the SFT stages (``<output_dir>/eval_sets``).

    Each set holds at most one item per source document (a law article, an insurance answer),
    picked in seeded order, so its clusters are its items. The documents of ``law_recall``,
    ``scenario_article`` and ``insurance_zh`` are reserved: their SFT examples all go to the
    test split, never to train or validation.
    """

    sets: list[Literal["law_recall", "law_withheld", "scenario_article", "insurance_zh"]] = Field(
        default_factory=lambda: list(EVAL_SET_NAMES),
        description="Sets to build: law_recall (article text of CPT-corpus laws, held-out "
        "phrasings), law_withheld (articles of withheld_laws), scenario_article (keywords -> law "
        "and article number, exact match), insurance_zh (insuranceqa zh, one question per answer).",
    )
    size: int = Field(
        default=240,
        ge=1,
        description="Items per set at most (fewer only when the corpus has fewer eligible documents).",
    )
    seed: int = Field(default=0, description="Seed of the document order and phrasing choice.")
    recall_laws: list[str] | None = Field(
        default=None,
        description="Laws whose article text is in the CPT corpus (the data_cpt 'laws' source's "
        "include list): law_recall and scenario_article draw from them. null: every law in force.",
    )


class DataSFTConfig(StrictModel):
    """Pipeline ``data_sft``: per-stage chat-template-rendered, label-masked SFT datasets."""

    kind: Literal["data_sft"] = Field(default="data_sft", description="Pipeline kind.")
    name: str = Field(description="Run name.")
    output_dir: str = Field(description="Where per-stage splits and the manifest are written.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    tokenizer: str = Field(description="Tokenizer handle or folder with a chat template.")
    max_len: int = Field(
        default=1024, ge=16, description="Examples longer than this are quarantined."
    )
    stages: list[SFTStageConfig] = Field(min_length=1, description="Curriculum stages in order.")
    withheld_laws: list[str] = Field(
        default_factory=list,
        description="Laws (exact law_name values of laws.db) never used by laws_qa, whatever its "
        "include list; they feed only the law_withheld eval set. Use the data_cpt list.",
    )
    eval_sets: EvalSetsConfig = Field(
        default_factory=EvalSetsConfig, description="Domain eval sets (sets: [] builds none)."
    )
    validation_fraction: float = Field(
        default=0.05, ge=0, lt=0.5, description="Held-out share by source doc."
    )
    test_fraction: float = Field(
        default=0.05, ge=0, lt=0.5, description="Test share by source doc."
    )
    seed: int = Field(default=0, description="Split/sampling seed.")
    rows_per_shard: int = Field(default=5000, ge=1, description="Examples per parquet shard.")
    shuffle: Literal["sort", "hash"] = Field(
        default="sort", description="Ray Data shuffle used to group output shards (see data_cpt)."
    )
    keep_work: bool = Field(
        default=False, description="Keep the intermediate _work/ folder (debugging)."
    )

    @model_validator(mode="after")
    def _check(self) -> DataSFTConfig:
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stages: names must be unique, repeated: {dup}")
        for i, stage in enumerate(self.stages):
            labels = [s.label for s in stage.sources]
            if len(set(labels)) != len(labels):
                raise ValueError(
                    f"stages.{i}.sources: a source appears twice in stage {stage.name!r}"
                )
        return self
