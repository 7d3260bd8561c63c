"""The typed results and the report built on them, from constructed per-model results."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from factories import (
    ANSWERS,
    QUESTIONS,
    eval_config,
    mmlu_raw,
    model_raw,
    ppl_raw,
    qa_raw,
    qa_set,
    write_sft_run,
)

from soaes.report.build import build_results
from soaes.report.schema import Results
from soaes.report.write import build_blocks, read_results, write_predictions, write_report

SERVING = json.loads((Path(__file__).parent / "serving_bench.json").read_text())


def per_model() -> tuple[dict, dict]:
    s = qa_set(seen=False)
    items = s["items"]
    good = [a for a in ANSWERS]  # the reference itself: far above echo
    bad = ["I do not know." for _ in QUESTIONS]  # below the echo of the question
    half = [a if i % 2 else "no" for i, a in enumerate(ANSWERS)]
    at_chance = [1 if i % 4 == 0 else 0 for i in range(57)]  # 25%
    raw = {
        "base": model_raw({"laws": qa_raw(items, half)}, mmlu_raw(at_chance), ppl_raw([20.0] * 8)),
        "cpt": model_raw(
            {"laws": qa_raw(items, half)}, mmlu_raw(at_chance, 0.35), ppl_raw([19.0] * 8)
        ),
        "cpt_sft": model_raw({"laws": qa_raw(items, good)}),
        "single": model_raw({"laws": qa_raw(items, bad, finish="length", cap=3)}),
    }
    return raw, {"laws": s}


def results(tmp_path, **report) -> Results:
    raw, sets = per_model()
    cfg = eval_config(tmp_path, list(raw), **report)
    return build_results(cfg, raw, sets)


def test_echo_row_flags_and_disclosure(tmp_path):
    res = results(tmp_path)
    (d,) = res.domain
    rows = {r.model: r for r in d.rows}
    assert set(rows) == {"base", "cpt", "cpt_sft", "single", "echo"}
    assert rows["echo"].role == "echo" and rows["base"].role == "base"
    assert (
        "not above echo" in rows["single"].flags and "below its start (cpt)" in rows["single"].flags
    )
    assert rows["cpt_sft"].flags == []
    assert rows["single"].diagnostics.share_truncated == 1.0
    assert d.n_items == 12 and d.n_clusters == 4 and d.disclosure.startswith("withheld")
    assert [s.item_id for s in res.samples] == ["1", "2", "3"]
    assert set(res.samples[0].predictions) == set(rows)


def test_retention_uninformative_at_chance_and_headline_names_the_measure(tmp_path):
    res = results(tmp_path)
    r = res.cpt_retention
    acc = next(c for c in r.cells if c.metric == "MMLU accuracy")
    assert res.models["base"].mmlu.at_chance
    assert acc.verdict == "uninformative (baseline at chance)"  # never "higher"
    assert r.headline is not None and r.headline.metric != "MMLU accuracy"
    assert res.headline[0].ours.startswith(r.headline.metric)
    ppl = next(c for c in r.cells if c.metric.startswith("perplexity"))
    # every document's NLL moved by the same amount: the interval has zero width
    assert ppl.verdict == "uninformative (zero-width interval)"


def test_parity_mismatch_is_not_comparable(tmp_path):
    start = str(tmp_path / "cpt" / "hf")
    prog = write_sft_run(
        tmp_path / "sft_cpt",
        [
            {
                "name": "stage1_chat",
                "steps": 10,
                "lr": 1e-4,
                "init": start,
                "sources": {"stage1_chat": 100},
            },
            {
                "name": "stage2_domain",
                "steps": 10,
                "lr": 5e-5,
                "init": "s1",
                "sources": {"stage2_domain": 100},
            },
        ],
    )
    single = write_sft_run(
        tmp_path / "sft_single",
        [
            {
                "name": "mixed",
                "steps": 20,
                "lr": 1e-4,
                "init": start,
                "sources": {"stage1_chat": 100, "stage2_domain": 100},
            }
        ],
    )
    res = results(tmp_path, train_runs={"cpt_sft": str(prog), "single": str(single)})
    (comp,) = [c for c in res.comparisons if c.key == "progressive"]
    assert not comp.parity.comparable
    assert comp.parity.reasons == ["stage2_domain: peak LR 0.0001 vs 5e-05"]
    assert all(c.verdict.startswith("not comparable") for c in comp.cells["laws"])
    claims = {c.claim.split(":")[0]: c.verdict for c in res.headline}
    assert claims["Progressive over single-stage"].startswith("not comparable")


def test_report_renders_md_html_json_from_typed_results(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": s, "loss": 5 - s / 10}) for s in range(10)))
    rows = [
        {
            "k": k,
            "acceptance_rate": 0.6,
            "speedup_measured": 1.2 + 0.1 * k,
            "outputs_identical": True,
            "per_position": [0.7, 0.5, 0.3][:k],
        }
        for k in (1, 2, 3)
    ]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"best_k": 3, "c": 0.3, "rows": rows}))
    serving = tmp_path / "bench.json"
    serving.write_text(json.dumps(SERVING))
    res = results(
        tmp_path, loss_curves={"cpt": str(metrics)}, speculative=str(spec), serving=str(serving)
    )
    paths = write_report(res, tmp_path / "r")
    md = paths["md"].read_text(encoding="utf-8")
    page = paths["html"].read_text(encoding="utf-8")
    for title in (
        "Headline",
        "Models evaluated",
        "Domain Q&A, set by set",
        "Retention against base",
        "Continual pre-training (CPT)",
        "Domain-progressive vs single-stage SFT",
        "Speculative decoding",
        "Serving",
        "Loss curves",
    ):
        assert f"## {title}" in md and f"<h2>{html.escape(title)}" in page
    assert "higher" not in md and "| echo | echo |" in md and "MMLU subset: 57 questions" in md
    assert "(n=12, 4 clusters)" in md
    figs = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert figs and all((paths["md"].parent / f).is_file() for f in figs)
    assert page.count('src="data:image/png;base64,') == len(figs)
    back = read_results(paths["json"])
    assert back.model_dump_json() == res.model_dump_json()  # NaN != NaN: compare the JSON
    assert back.serving.single_stream.tokens_per_s == res.serving.single_stream.tokens_per_s


def test_empty_results_render_not_run(tmp_path):
    res = Results(title="t", created="now")
    md = write_report(res, tmp_path)["md"].read_text(encoding="utf-8")
    assert md.count("Not run") == 9 and len(build_blocks(res)) > 10


def test_predictions_written_per_model_and_set(tmp_path):
    raw, sets = per_model()
    (path, *_) = write_predictions(raw, list(sets), tmp_path)
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert path.name == "base__laws.jsonl" and len(lines) == 12
    assert {"id", "set", "model", "cluster", "prediction", "scores"} <= set(lines[0])


def test_markdown_table_cells_stay_on_one_line(tmp_path):
    from soaes.report.render import render_markdown

    md = render_markdown([("table", ["a", "b"], [["line one\nline two", "x|y"]])], tmp_path)
    assert "| line one line two | x\\|y |" in md


def test_spec_measurements_at_parity_or_not():
    from soaes.report.schema import Acceptance
    from soaes.report.sections_runtime import measurement_differences

    rows = [{"k": 2}]
    a = Acceptance(target="t", num_prompts=4, max_tokens=16, rows=rows)
    assert measurement_differences(a, a.model_copy(update={"draft": "init"})) == []
    b = Acceptance(target="t", num_prompts=8, max_tokens=16, rows=rows)
    assert measurement_differences(a, b) == ["prompts: 4 vs 8"]


def test_disclosure_reads_the_eval_sets_strings():
    from soaes.report.domain import disclosure

    assert disclosure([{"seen_in_training": "cpt_text"}] * 2).startswith(
        "recall: every answer appears in a training corpus (cpt_text)"
    )
    assert disclosure([{"seen_in_training": "none"}] * 2).startswith("withheld")
    assert disclosure([{"seen_in_training": True}, {"seen_in_training": "none"}]).startswith(
        "mixed: 1 of 2"
    )
    assert disclosure([{}]).startswith("not stated")


def test_headline_quotes_the_served_candidate_and_the_table_shows_every_one(tmp_path):
    def acc(name: str, speed: float, identical: bool = True) -> str:
        rows = [{"k": 2, "speedup_measured": speed, "outputs_identical": identical}]
        path = tmp_path / f"acceptance_{name}.json"
        path.write_text(json.dumps({"best_k": 2, "c": 0.2, "rows": rows}))
        return str(path)

    choice = tmp_path / "acceptance.json"
    choice.write_text(json.dumps({"served": "eagle3"}))
    res = results(
        tmp_path,
        speculative=acc("distilled", 1.14),
        speculative_undistilled=acc("undistilled", 0.81),
        speculative_eagle3=acc("eagle3", 1.88),
        speculative_choice=str(choice),
    )
    (speed, same) = [c for c in res.headline if "peculati" in c.claim]
    assert "served: eagle3" in speed.claim and speed.value == 1.88
    assert speed.verdict == "above" and same.verdict == "holds"
    md = write_report(res, tmp_path / "r")["md"].read_text(encoding="utf-8")
    assert all(f"| {n} | 2 |" in md for n in ("distilled", "undistilled", "eagle3"))
    assert "Served (chosen by measurement): eagle3" in md
    choice.write_text(json.dumps({"served": None}))  # nothing chosen: the distilled draft
    res = results(tmp_path, speculative=acc("distilled", 1.14), speculative_choice=str(choice))
    assert "served: distilled" in next(c.claim for c in res.headline if "speed-up" in c.claim)
