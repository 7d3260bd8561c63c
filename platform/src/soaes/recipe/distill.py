"""The ``distill`` pipeline: train the draft, then measure its acceptance against the target.

Training (:mod:`soaes.train.distill`) and acceptance measurement (:mod:`soaes.eval.acceptance`)
sit side by side in the layers; this runner, above both, runs one after the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soaes.config.distill import DistillConfig
from soaes.eval.acceptance import compare_drafts
from soaes.train.distill import run_distill


def run_distill_pipeline(cfg: DistillConfig) -> dict[str, Any]:
    """Runner of the ``distill`` pipeline kind; returns the run summary.

    Returns:
        :func:`soaes.train.distill.run_distill`'s summary (steps, loss, held-out KL, paths)
        and, when ``cfg.acceptance`` is set, ``acceptance``: acceptance and speed of the
        undistilled and the distilled draft with the chosen k.
    """
    summary = run_distill(cfg)
    if cfg.acceptance is not None:
        run_dir = Path(cfg.output_dir).resolve()
        summary["acceptance"] = compare_drafts(
            summary["target"],
            {"undistilled": summary["draft_init"], "distilled": str(run_dir / "hf")},
            cfg.acceptance,
            run_dir,
        )
    return summary
