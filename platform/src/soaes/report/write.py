"""Write the report: ``report.md`` (+ ``figures/``), ``report.html``, ``report.json`` and the
per-item predictions (``predictions/<model>__<set>.jsonl``) beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from soaes.report import sections as q
from soaes.report import sections_runtime as rt
from soaes.report.render import Block, render_html, render_markdown
from soaes.report.schema import Results


def build_blocks(res: Results) -> list[Block]:
    """Every section, in order; missing data renders as "not run"."""
    created = f"Created {res.created}" + (f"; profile {res.profile}" if res.profile else "") + "."
    return [
        ("h1", res.title),
        ("p", created),
        *([("p", f"**Note.** {res.note}")] if res.note else []),
        *q.headline_blocks(res.headline),
        *q.power_blocks(res.headline),
        *q.stages_blocks(res),
        *q.models_blocks(res),
        *q.domain_blocks(res),
        *q.samples_blocks(res),
        *q.retention_blocks(res),
        *q.cpt_blocks(res),
        *q.comparison_blocks(res),
        *rt.speculative_blocks(res),
        *rt.serving_blocks(res),
        *rt.loss_blocks(res.loss_curves),
        ("h2", "Scoring conventions"),
        ("p", q.CONVENTIONS_TEXT),
    ]


def write_report(results: Results, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/*.png``), ``report.html`` and ``report.json``.

    Returns:
        ``{"md", "html", "json"}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = build_blocks(results)
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    paths["md"].write_text(render_markdown(blocks, out / "figures"), encoding="utf-8")
    paths["html"].write_text(render_html(blocks, results.title), encoding="utf-8")
    paths["json"].write_text(results.model_dump_json(indent=1), encoding="utf-8")
    return paths


def read_results(path: str | Path) -> Results:
    """A ``report.json`` back as :class:`Results`."""
    return Results.model_validate_json(Path(path).read_text(encoding="utf-8"))


def write_predictions(
    per_model: dict[str, dict], sets: Sequence[str], out_dir: str | Path
) -> list[Path]:
    """``predictions/<model>__<set>.jsonl``: item id, set, model, prediction, scores."""
    folder = Path(out_dir) / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, raw in per_model.items():
        for s in sets:
            if s not in raw["qa"]:
                continue
            path = folder / f"{model}__{s}.jsonl"
            lines = [
                json.dumps({"set": s, "model": model, **r}, ensure_ascii=False)
                for r in raw["qa"][s]["per_item"]
            ]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            paths.append(path)
    return paths
