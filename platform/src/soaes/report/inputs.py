"""Report inputs written by other stages: JSON files and training loss curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from soaes.report.schema import LossCurves

log = logging.getLogger(__name__)
_X_KEYS = ("step", "global_step", "iteration", "iter")


def read_json(path: str | None) -> dict | None:
    """A report input, or None (logged) when it is not configured or not there."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        log.warning("report input %s not found: that section renders as 'not run'", path)
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def _series(p: Path) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        x = next((rec[k] for k in _X_KEYS if isinstance(rec.get(k), int | float)), n)
        for k, v in rec.items():
            if "loss" in k and isinstance(v, int | float) and not isinstance(v, bool):
                series.setdefault(k, []).append((x, v))
    return series


def read_loss_curves(paths: dict[str, str]) -> LossCurves:
    """``{label: metrics.jsonl}`` -> ``{label: {series: [(step, value), ...]}}``.

    Every numeric field whose name contains ``loss`` is a series; the x value is ``step``
    (or ``global_step``/``iteration``/``iter``, else the line number). Unreadable lines are
    skipped; a missing file is logged and left out.
    """
    out: LossCurves = {}
    for label, path in paths.items():
        p = Path(path)
        if not p.is_file():
            log.warning("loss curve %s: %s not found", label, path)
            continue
        out[label] = _series(p)
    return out
