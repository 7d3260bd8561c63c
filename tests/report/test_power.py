"""Power of the headline claims, the recipe's note and stage times, and re-publishing a run's
report from its eval stage's ``report.json``."""

from __future__ import annotations

import json

from test_report import results

from soaes.recipe.publish import publish_report, stage_times
from soaes.report.claims import power
from soaes.report.schema import Claim, Ratio, Results
from soaes.report.sections import power_blocks
from soaes.report.write import write_report


def _ratio(ratio: float, low: float, high: float) -> Ratio:
    return Ratio(
        metric="jieba rouge-1", before=10.0, after=10.0 * ratio, ratio=ratio, low=low, high=high,
        n=150, n_clusters=150, ci=0.95, convention="cluster bootstrap", verdict="v",
    )  # fmt: skip


def test_detected_effect_is_powered_whatever_its_width():
    assert power(_ratio(0.7, 0.5, 0.9), 1.08)["powered"] is True
    assert power(_ratio(1.5, 1.1, 1.9), 1.08)["powered"] is True


def test_null_result_is_powered_only_when_it_could_detect_the_papers_effect():
    narrow = power(_ratio(1.0, 0.97, 1.03), 1.08)  # mde 1 + 1.43 * 0.03 = 1.043 <= 1.08
    wide = power(_ratio(1.0, 0.8, 1.2), 1.08)  # mde ~1.29 > 1.08
    assert narrow["powered"] is True and narrow["min_detectable"] < 1.08
    assert wide["powered"] is False and wide["min_detectable"] > 1.2


def test_no_interval_no_power_figure():
    assert power(None, 1.08) == {}
    assert power(_ratio(1.0, 1.0, 1.0), 1.08) == {}  # zero width: uninformative
    assert power(_ratio(float("nan"), 0.9, 1.1), 1.08) == {}


def _claim(powered: bool | None, mde: float | None = None) -> Claim:
    return Claim(
        claim="c", paper="1.08x", ours="o", verdict="v", value=1.0,
        min_detectable=mde, powered=powered,
    )  # fmt: skip


def test_power_block_counts_the_claims_that_are_not_powered():
    (text, items) = power_blocks([_claim(True, 1.05), _claim(False, 1.31), _claim(None)])
    assert text[1].startswith("**Not powered**: 1 of 2") and "~1.31x" in items[1][0]
    (only,) = power_blocks([_claim(True, 1.05)])
    assert only[1].startswith("**Powered**")
    assert power_blocks([_claim(None)]) == []


def test_publish_rerenders_with_note_stage_times_and_predictions(tmp_path):
    out = tmp_path / "run"
    (out / "eval" / "predictions").mkdir(parents=True)
    (out / "eval" / "predictions" / "cpt__law_recall.jsonl").write_text("{}\n")
    write_report(Results(title="t", created="now"), out / "eval")
    (out / "cpt").mkdir()
    (out / "cpt" / "STAGE_DONE.json").write_text(json.dumps({"key": "k", "seconds": 1200.0}))
    records = [
        {"stage": "cpt", "status": "skipped", "key": "k"},
        {"stage": "eval", "status": "ran", "key": "e", "seconds": 600.0},
    ]
    dirs = {"cpt": str(out / "cpt"), "eval": str(out / "eval")}
    publish_report(out, records, dirs, "Not powered: see docs/repro/report.md.")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "**Note.** Not powered: see docs/repro/report.md." in md
    assert "| cpt | ran in an earlier call | 20.0 min |" in md and "| total |  | 30.0 min |" in md
    assert (out / "predictions" / "cpt__law_recall.jsonl").is_file()
    back = json.loads((out / "report.json").read_text())
    assert back["note"].startswith("Not powered") and back["stages"][1]["seconds"] == 600.0


def test_stage_without_a_record_reports_no_time(tmp_path):
    (t,) = stage_times([{"stage": "x", "status": "skipped"}], {"x": str(tmp_path / "none")})
    assert t.seconds is None and t.status == "ran in an earlier call"


def test_arm_not_above_echo_makes_the_claim_uninformative(tmp_path):
    res = results(tmp_path)  # constructed: the single-stage arm answers "I do not know."
    prog = [c for c in res.headline if c.claim.startswith("Progressive over single-stage")]
    assert prog and all(c.verdict == "uninformative (single not above echo)" for c in prog)
    assert all(c.powered is None and c.value is not None for c in prog)  # ratio still shown
