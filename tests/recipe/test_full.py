"""The full recipe: stage wiring validates, keys skip finished stages, and (heavy) it runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soaes.config.loader import config_hash, load_config
from soaes.recipe.full import plan, stage_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["full_tiny.yaml", "full_demo.yaml"])
def test_every_stage_config_validates_with_its_wiring(name):
    cfg = load_config(ROOT / "pipelines" / name)
    stages = plan(cfg, final_sft_stage="stage2_domain")
    assert [s.name for s in stages] == ["data_cpt", "data_sft", "cpt", "sft_cpt", "sft_base",
                                        "sft_single", "distill", "eval"]
    out = Path(cfg.output_dir)
    for s in stages:
        scfg = load_config(ROOT / s.ref.pipeline, [*s.ref.overrides, *s.wiring])
        assert Path(scfg.output_dir) == out / s.name
    by = {s.name: load_config(ROOT / s.ref.pipeline, [*s.ref.overrides, *s.wiring]) for s in stages}
    assert by["cpt"].data_dir == str(out / "data_cpt")
    assert by["sft_cpt"].model.path == str(out / "cpt" / "hf")
    assert by["sft_base"].model.path == cfg.base_model
    assert by["sft_single"].mode == "single_stage" and by["sft_cpt"].mode == "progressive"
    assert by["distill"].target.path == str(out / "sft_cpt" / "hf")
    ev = by["eval"]
    assert {m.name for m in ev.models} == {"base", "cpt", "base_sft", "cpt_sft", "single_stage"}
    assert ev.qa[0].path == str(out / "data_sft" / "stage2_domain" / "test" / "qa.jsonl")
    assert ev.roles.progressive == "cpt_sft" and ev.roles.single_stage == "single_stage"


def test_stage_key_changes_with_config_and_upstream():
    cfg = load_config(ROOT / "pipelines" / "data_cpt_tiny.yaml")
    h = config_hash(cfg)
    assert stage_key(h, ["a"]) == stage_key(h, ["a"])
    assert stage_key(h, ["a"]) != stage_key(h, ["b"])
    assert stage_key(h, []) != stage_key(config_hash(load_config(
        ROOT / "pipelines" / "data_cpt_tiny.yaml", ["seq_len=64"])), [])


@pytest.mark.heavy
@pytest.mark.recipe
@pytest.mark.timeout(2400)
def test_full_tiny_runs_end_to_end_and_resumes(ray_session, tmp_path):
    from soaes.recipe.full import run_full

    cfg = load_config(ROOT / "pipelines" / "full_tiny.yaml", [f"output_dir={tmp_path / 'full'}"])
    first = run_full(cfg)
    assert [s["status"] for s in first["stages"]] == ["ran"] * 8
    report = json.loads((tmp_path / "full" / "report.json").read_text())
    md = (tmp_path / "full" / "report.md").read_text()
    for section in ("cpt", "progressive", "speculative", "loss_curves", "models"):
        assert report.get(section), f"report section {section} is empty"
    assert "Not run" not in md
    second = run_full(cfg)
    assert [s["status"] for s in second["stages"]] == ["skipped"] * 8
