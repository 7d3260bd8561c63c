"""Runner of the ``eval`` pipeline kind: measure every model, then write the typed report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soaes.config.eval import EvalConfig
from soaes.config.loader import config_hash
from soaes.eval.runner import evaluate_all
from soaes.report.build import build_results
from soaes.report.write import write_predictions, write_report


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate, write ``results.json``, the report and per-item predictions; a summary."""
    out = Path(cfg.output_dir)
    per_model, reused, qa_sets = evaluate_all(cfg)
    results = build_results(cfg, per_model, qa_sets, config_hash(cfg))
    (out / "results.json").write_text(results.model_dump_json(indent=1), encoding="utf-8")
    paths = write_report(results, out)
    write_predictions(per_model, list(qa_sets), out)
    return {
        "output_dir": str(out),
        "models": list(per_model),
        "reused": reused,
        "report": {k: str(v) for k, v in paths.items()},
        "headline": {c.claim: f"{c.ours} (paper {c.paper}): {c.verdict}" for c in results.headline},
    }
