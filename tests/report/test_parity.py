"""Parity of two ablation arms from their runs' data_seen.json files."""

from __future__ import annotations

from factories import write_sft_run

from soaes.report.parity import parity


def _runs(tmp_path, single_tokens_rows: int, single_steps: int = 20):
    start = str(tmp_path / "cpt_hf")
    prog = write_sft_run(
        tmp_path / "prog",
        [
            {"name": "s1", "steps": 10, "lr": 1e-4, "init": start, "sources": {"chat": 100}},
            {"name": "s2", "steps": 10, "lr": 1e-4, "init": "s1", "sources": {"law": 100}},
        ],
    )
    single = write_sft_run(
        tmp_path / "single",
        [
            {
                "name": "mixed",
                "steps": single_steps,
                "lr": 1e-4,
                "init": start,
                "sources": {"chat": single_tokens_rows, "law": 100},
            }
        ],
    )
    return ("single", str(single)), ("prog", str(prog))


def test_arms_at_parity_are_comparable(tmp_path):
    p = parity(*_runs(tmp_path, 104), same_start=True)  # 4% more chat tokens: within 5%
    assert p.comparable and p.reasons == []
    single, prog = p.arms
    assert prog.steps == 20 and prog.start == single.start
    assert {s.source: s.examples for s in prog.sources} == {"chat": 100, "law": 100}


def test_tokens_and_steps_beyond_tolerance_are_not_comparable(tmp_path):
    p = parity(*_runs(tmp_path, 150, single_steps=30), same_start=True)
    assert not p.comparable
    assert p.reasons == ["chat: tokens seen 7500 vs 5000", "optimizer steps 30 vs 20"]


def test_missing_run_files_are_not_comparable(tmp_path):
    p = parity(("a", str(tmp_path / "nope")), ("b", str(tmp_path / "nope2")), same_start=False)
    assert not p.comparable and p.reasons[0].startswith("unknown:") and p.arms == []


def test_one_step_of_rounding_is_parity_two_are_not(tmp_path):
    # a partial last batch per stage: 21 vs 20 steps is the same budget; 22 vs 20 is not
    assert parity(*_runs(tmp_path, 100, single_steps=21), same_start=True).comparable
    p = parity(*_runs(tmp_path / "b", 100, single_steps=22), same_start=True)
    assert p.reasons == ["optimizer steps 22 vs 20"]
