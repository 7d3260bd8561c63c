"""The ``distill`` pipeline: train the draft, then measure its acceptance against the target.

Training (:mod:`soaes.train.distill`) and acceptance measurement (:mod:`soaes.eval.acceptance`)
sit side by side in the layers; this runner, above both, runs one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soaes.config.distill import DistillConfig
from soaes.eval.spec_choice import candidates_of, measure_run
from soaes.train.distill import run_distill


def run_distill_pipeline(cfg: DistillConfig) -> dict[str, Any]:
    """Runner of the ``distill`` pipeline kind; returns the run summary.

    Returns:
        :func:`soaes.train.distill.run_distill`'s summary (steps, loss, held-out KL, paths)
        and, when ``cfg.acceptance`` is set, ``acceptance``: every candidate trained (the
        undistilled and distilled draft, the EAGLE-3 head), every k, measured per step; the
        winner goes to ``spec_decode.json``.
    """
    summary = run_distill(cfg)
    if cfg.acceptance is not None:
        run_dir = Path(cfg.output_dir).resolve()
        summary["acceptance"] = measure_run(
            summary["target"], candidates_of(run_dir), cfg.acceptance, run_dir
        )
    return summary
