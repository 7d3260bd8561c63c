"""soaes' own Prometheus series are fed: the training loop publishes every logged step (rank 0
only, tagged by pipeline and stage), the data pipelines count records by outcome, and a
failing publish never breaks the run. The publish functions are replaced by recorders: the
live export is checked by the heavy cluster test."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import soaes.telemetry as prom
from soaes.config.loader import load_config
from soaes.config.train import CheckpointSpec, LoggingSpec, OptimSpec
from soaes.data import pipeline as cpt_data
from soaes.data import sft as sft_data
from soaes.data.manifest import outcome_totals
from soaes.train import loop
from soaes.train.plan import RunInfo

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def published(monkeypatch):
    """Every publish call as ``(function name, args)``; fresh once-only failure log."""
    calls: list[tuple[str, tuple]] = []
    monkeypatch.setattr(prom, "publish_train_step", lambda *a: calls.append(("train", a)))
    monkeypatch.setattr(prom, "count_records", lambda *a: calls.append(("records", a)))
    monkeypatch.setattr(prom, "_failed", set())
    return calls


def test_metric_tags_name_the_pipeline_and_the_stage():
    assert RunInfo("cpt_tiny", "cpt", "m", "h").metric_tags() == ("cpt_tiny", "cpt")
    assert RunInfo("distill_tiny", "distill", "m", "h").metric_tags() == (
        "distill_tiny",
        "distill",
    )
    sft = RunInfo("sft_tiny/stage1_chat", "sft", "m", "h", stage="stage1_chat")
    assert sft.metric_tags() == ("sft_tiny", "stage1_chat")


class _Engine:
    """What the logging step reads from a DeepSpeed engine."""

    device = "cpu"
    world_size = 1

    def get_global_grad_norm(self) -> float:
        return 1.0


def _run_steps(tmp_path: Path, monkeypatch, rank0: bool, steps: int = 5) -> None:
    """``_on_step`` after each of ``steps`` optimizer steps (loss 2.0, 100 tokens each)."""
    monkeypatch.setattr(loop, "_is_rank0", lambda: rank0)
    monkeypatch.setattr(loop, "emit", lambda plan, rec, **kw: None)
    plan = loop.RunPlan(
        run_dir=str(tmp_path),
        model_path="unused",
        tokenizer_src=None,
        dtype="float32",
        trust_remote_code=False,
        activation_checkpointing=False,
        ds_config={},
        optim=OptimSpec(),
        micro_batch_size=1,
        grad_accum_steps=1,
        total_steps=steps,
        micro_per_epoch=steps,
        collate="sft",
        pad_id=0,
        checkpoint=CheckpointSpec(every_steps=0, at_end=False),
        logging=LoggingSpec(log_every_steps=2),
        run=RunInfo("sft_tiny/stage2_domain", "sft", "m", "h", stage="stage2_domain"),
    )
    state, win = loop.LoopState(), loop._Window()
    for step in range(1, steps + 1):
        state.step = step
        win.add(torch.tensor(2.0), torch.tensor([50, 100]))
        win.steps += 1
        win = loop._on_step(_Engine(), plan, state, win, 3e-4, 1000, {}, loop.causal_lm_loss)


def test_rank0_publishes_every_logging_step(tmp_path, monkeypatch, published):
    _run_steps(tmp_path, monkeypatch, rank0=True)
    # Logged: step 1, every 2nd step, the last step.
    assert [args[2] for _, args in published] == [1, 2, 4, 5]
    for kind, (run, stage, _, loss, tokens_per_s, lr) in published:
        assert (kind, run, stage) == ("train", "sft_tiny", "stage2_domain")
        assert loss == pytest.approx(2.0)
        assert tokens_per_s > 0
        assert lr == 3e-4


def test_other_ranks_publish_nothing(tmp_path, monkeypatch, published):
    _run_steps(tmp_path, monkeypatch, rank0=False)
    assert published == []


def test_failing_publish_never_breaks_training_and_logs_once(
    tmp_path, monkeypatch, published, caplog
):
    def publish_train_step(*args):
        raise RuntimeError("Ray is not connected")

    monkeypatch.setattr(prom, "publish_train_step", publish_train_step)
    with caplog.at_level(logging.DEBUG, logger=prom.__name__):
        _run_steps(tmp_path, monkeypatch, rank0=True)
    failures = [r for r in caplog.records if r.name == prom.__name__]
    assert len(failures) == 1 and failures[0].levelno == logging.DEBUG


def _source(out: int, filtered: dict, exact: int, near: int, quarantined: dict) -> dict:
    n_in = out + sum(filtered.values()) + exact + near + sum(quarantined.values())
    return {
        "docs_in": n_in,
        "docs_out": out,
        "filtered": filtered,
        "exact_dups": exact,
        "near_dups": near,
        "quarantined": quarantined,
    }


def test_outcome_totals_fold_reasons_and_duplicate_kinds():
    sources = [
        _source(90, {"too_short": 3, "mix_downsampled": 2}, 4, 1, {"bad_json": 1}),
        _source(10, {}, 0, 2, {}),
    ]
    totals = outcome_totals(sources)
    assert totals == {"kept": 100, "filtered": 5, "deduped": 7, "quarantined": 1}
    assert sum(totals.values()) == sum(s["docs_in"] for s in sources)


# Manifests as the data drivers see them from their Ray work (only the keys they read):
# data_cpt's sources per source, data_sft's per stage and source (counted over all stages).
CPT_MANIFEST = {
    "sources": {
        "a": _source(90, {"too_short": 3}, 4, 1, {"bad_json": 2}),
        "b": _source(10, {"mix_downsampled": 5}, 0, 0, {}),
    },
    "train": {},
    "groups": {},
    "ratio": {"max_relative_error": 0.0},
    "quarantine": {"records": 2},
    "timings_s": {},
}
SFT_MANIFEST = {
    "sources": {
        "stage1_chat": {"chitchat": _source(50, {"empty": 1}, 3, 0, {})},
        "stage2_domain": {"laws_qa": _source(40, {}, 2, 0, {"too_long": 4})},
    },
    "stages": [],
    "quarantine": {"records": 4},
    "timings_s": {},
}


@pytest.mark.parametrize(
    ("module", "run", "stage", "manifest", "counts"),
    [
        (cpt_data, "run_cpt_data", "data_cpt", CPT_MANIFEST, (100, 8, 5, 2)),
        (sft_data, "run_sft_data", "data_sft", SFT_MANIFEST, (90, 1, 5, 4)),
    ],
    ids=["data_cpt", "data_sft"],
)
def test_data_pipelines_count_records_by_outcome(
    module, run, stage, manifest, counts, tmp_path, monkeypatch, published
):
    cfg = load_config(ROOT / "pipelines" / f"{stage}_tiny.yaml", [f"output_dir={tmp_path}"])
    monkeypatch.setattr(module, "connect", lambda *a: None)
    monkeypatch.setattr(module, "_run", lambda cfg, out: manifest)  # the Ray work
    monkeypatch.setattr(module, "print_summary", lambda m: None)
    getattr(module, run)(cfg)
    outcomes = dict(zip(("kept", "filtered", "deduped", "quarantined"), counts, strict=True))
    assert published == [("records", (cfg.name, stage, outcomes))]
