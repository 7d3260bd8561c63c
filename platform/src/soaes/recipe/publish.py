"""Publish the recipe's report at the run's root: the eval stage's results with the recipe's
own note (e.g. "not powered") and every stage's wall time, re-rendered by this code."""

from __future__ import annotations

import shutil
from pathlib import Path

from soaes.recipe.stages import read_done
from soaes.report.claims import headline
from soaes.report.schema import Results, StageTime
from soaes.report.write import read_results, write_report

HEADLINE_SET = "law_recall"  # recall of CPT text: what the headline comparisons are read on


def stage_times(records: list[dict], dirs: dict[str, str]) -> list[StageTime]:
    """Each stage's wall time; a stage skipped now reports the run that finished it."""
    out = []
    for r in records:
        if r.get("status") == "ran":
            out.append(StageTime(stage=r["stage"], status="ran", seconds=r.get("seconds")))
            continue
        done = read_done(Path(dirs.get(r["stage"], ""))) or {}
        out.append(
            StageTime(
                stage=r["stage"], status="ran in an earlier call", seconds=done.get("seconds")
            )
        )
    return out


def with_recipe_parts(res: Results, note: str | None, stages: list[StageTime]) -> Results:
    """The eval results with the headline recomputed (power included), the note and stages."""
    names = [d.name for d in res.domain]
    qa_set = HEADLINE_SET if HEADLINE_SET in names else (names[0] if names else None)
    res = res.model_copy(update={"note": note, "stages": stages})
    return res.model_copy(update={"headline": headline(res, qa_set)})


def publish_report(out: Path, records: list[dict], dirs: dict[str, str], note: str | None) -> None:
    """Write ``<out>/report.{md,html,json}`` (+ ``figures/``, ``predictions/``) from the eval
    stage's ``report.json``; nothing when the eval stage wrote none."""
    src = out / "eval" / "report.json"
    if not src.exists():
        return
    res = with_recipe_parts(read_results(src), note, stage_times(records, dirs))
    write_report(res, out)
    if (out / "eval" / "predictions").is_dir():
        shutil.copytree(out / "eval" / "predictions", out / "predictions", dirs_exist_ok=True)
