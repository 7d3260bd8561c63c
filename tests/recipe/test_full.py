"""The full recipe: stage wiring validates, keys skip finished stages, and (heavy) it runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from soaes.config.loader import config_hash, load_config
from soaes.recipe.full import plan, summary_table
from soaes.recipe.stages import prepare_stage_dir, stage_config, stage_key
from soaes.serve.app import parse_args as parse_app
from soaes.serve.deploy import load_serve_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["full_tiny.yaml", "full_demo.yaml"])
def test_every_stage_config_validates_with_its_wiring(name, tmp_path):
    # an empty output folder: no eval_sets/ yet, so eval falls back to the test split
    cfg = load_config(ROOT / "pipelines" / name, [f"output_dir={tmp_path / 'full'}"])
    stages = plan(cfg, final_sft_stage="stage2_domain")
    assert [s.name for s in stages] == [
        "data_cpt",
        "data_sft",
        "cpt",
        "sft_cpt",
        "sft_base",
        "sft_single",
        "distill",
        "serve_bench",
        "eval",
    ]
    out = Path(cfg.output_dir)
    bench = stages[-2]
    schema = load_serve_config(ROOT / bench.ref.app, [*bench.ref.overrides, *bench.overrides()])
    app = parse_app(schema.applications[0].args)
    assert app.target == str(out / "sft_cpt" / "hf")
    assert app.speculation.distill_dir == str(out / "distill") and app.speculation.draft is None
    assert "--no-kill" in bench.ref.argv("b.json", bench.overrides())
    stages = [s for s in stages if s is not bench]
    by = {s.name: stage_config(s, cfg) for s in stages}
    for s in stages:
        assert Path(by[s.name].output_dir) == out / s.name
    assert by["cpt"].data_dir == str(out / "data_cpt")
    assert by["sft_cpt"].model.path == str(out / "cpt" / "hf")
    assert by["sft_base"].model.path == cfg.base_model
    assert by["sft_single"].mode == "single_stage" and by["sft_cpt"].mode == "progressive"
    assert by["distill"].target.path == str(out / "sft_cpt" / "hf")
    ev = by["eval"]
    assert {m.name for m in ev.models} == {"base", "cpt", "base_sft", "cpt_sft", "single_stage"}
    assert ev.qa[0].path == str(out / "data_sft" / "stage2_domain" / "test" / "qa.jsonl")
    assert ev.roles.progressive == "cpt_sft" and ev.roles.single_stage == "single_stage"
    assert ev.report.serving == str(out / "serve_bench" / "bench.json")


def test_stage_key_changes_with_config_and_upstream():
    cfg = load_config(ROOT / "pipelines" / "data_cpt_tiny.yaml")
    h = config_hash(cfg)
    assert stage_key(h, ["a"]) == stage_key(h, ["a"])
    assert stage_key(h, ["a"]) != stage_key(h, ["b"])
    assert stage_key(h, []) != stage_key(
        config_hash(load_config(ROOT / "pipelines" / "data_cpt_tiny.yaml", ["seq_len=64"])), []
    )


def test_stage_dir_kept_for_the_same_key_and_cleared_for_another(tmp_path):
    out = tmp_path / "cpt"
    prepare_stage_dir(out, "k1")
    (out / "checkpoints").mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / "STAGE_DONE.json").write_text("{}")
    prepare_stage_dir(out, "k1")  # interrupted run, same key: resume inside it
    assert (out / "checkpoints").is_dir() and (out / "metrics.jsonl").exists()
    assert not (out / "STAGE_DONE.json").exists()
    prepare_stage_dir(out, "k2")  # changed config or upstream: nothing stale survives
    assert sorted(p.name for p in out.iterdir()) == ["STAGE_STARTED.json"]
    legacy = tmp_path / "eval"  # a folder from before keys were recorded: cleared too
    legacy.mkdir()
    (legacy / "results.json").write_text("{}")
    prepare_stage_dir(legacy, "k3")
    assert not (legacy / "results.json").exists()
    (legacy / "results.json").write_text("{}")  # content-keyed caches may stay
    prepare_stage_dir(legacy, "k4", clear_stale=False)
    assert (legacy / "results.json").exists()


def test_summary_table_lists_each_stage_with_its_wall_time():
    records = [
        {"stage": "data_cpt", "status": "skipped", "key": "k"},
        {"stage": "cpt", "status": "ran", "key": "k", "seconds": 49.2},
        {"stage": "sft_progressive", "status": "ran", "key": "k", "seconds": 213.0},
    ]
    assert summary_table(records).splitlines() == [
        "stage            status   wall time",
        "data_cpt         skipped  -",
        "cpt              ran      49s",
        "sft_progressive  ran      3m33s",
        "total                     4m22s",
    ]


@pytest.mark.heavy
@pytest.mark.recipe
@pytest.mark.timeout(1500)
def test_full_tiny_runs_end_to_end_and_resumes(tiny_recipe):
    from soaes.recipe.full import run_full
    from soaes.report.fmt import NOT_RUN

    assert tiny_recipe.error is None, tiny_recipe.error
    out, cfg, first = tiny_recipe.out, tiny_recipe.cfg, tiny_recipe.summary
    assert [s["status"] for s in first["stages"]] == ["ran"] * 9
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for section in (
        "models",
        "domain",
        "samples",
        "retention",
        "cpt_retention",
        "comparisons",
        "speculative",
        "serving",
        "loss_curves",
        "headline",
    ):
        assert report.get(section), f"report section {section} is empty"
    assert NOT_RUN not in md and "<img" in html
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert figures and all((out / f).is_file() for f in figures)
    assert set(report["models"]) == {"base", "cpt", "base_sft", "cpt_sft", "single_stage", "echo"}
    # each ablation carries its parity table, read from the SFT runs' data_seen.json
    parities = {c["key"]: c["parity"] for c in report["comparisons"]}
    assert set(parities) == {"cpt_downstream", "progressive"}
    assert all(p and len(p["arms"]) == 2 for p in parities.values()), parities
    assert all(
        (out / arm / st / "data_seen.json").is_file()
        for arm, st in (("sft_cpt", "stage1_chat"), ("sft_single", "mixed"))
    )
    curves = report["loss_curves"]
    assert set(curves) == {
        "cpt",
        "sft_cpt stage1_chat",
        "sft_cpt stage2_domain",
        "sft_single mixed",
        "distill",
    }
    assert all(curves[k].get("loss") for k in curves), {k: list(v) for k, v in curves.items()}
    # the stage-2 SFT run started from stage 1's output, stage 1 from the CPT export
    sft = json.loads((out / "sft_cpt" / "STAGE_DONE.json").read_text())["summary"]
    assert Path(sft["stages"][0]["init_from"]).resolve() == (out / "cpt" / "hf").resolve()
    assert Path(sft["stages"][1]["init_from"]).parent.name == "stage1_chat"
    bench = report["serving"]["single_stream"]
    assert bench["identical_outputs_all_four"] is True
    assert report["serving"]["load"]["only_200_429_503"] is True
    # a second run reuses every finished stage; a changed upstream re-runs what follows it
    second = run_full(cfg)
    assert [s["status"] for s in second["stages"]] == ["skipped"] * 9


def test_eval_sets_of_the_sft_data_are_wired_each_on_its_own(tmp_path):
    cfg = load_config(ROOT / "pipelines" / "full_tiny.yaml", [f"output_dir={tmp_path}"])
    sets = tmp_path / "data_sft" / "eval_sets"
    sets.mkdir(parents=True)
    for name in ("law_withheld", "insurance_zh"):
        (sets / f"{name}.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (ev,) = [s for s in plan(cfg, final_sft_stage="stage2_domain") if s.name == "eval"]
    ecfg = stage_config(ev, cfg)
    # the eval sets replace the mixed "domain" test split; the headline uses the first set
    # when there is no law_recall set
    assert [q.name for q in ecfg.qa] == ["insurance_zh", "law_withheld"]
    assert ecfg.roles.qa_set == "insurance_zh"
    assert all(q.limit == cfg.qa_limit for q in ecfg.qa)
    assert set(ecfg.report.train_runs) == {"base_sft", "cpt_sft", "single_stage"}
