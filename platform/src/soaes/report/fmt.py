"""Number formatting shared by the report's sections and the headline."""

from __future__ import annotations

import math

from soaes.report.schema import Ratio

NOT_RUN = "*Not run: no results for this section.*"


def fmt_num(v: float | int | None, nd: int = 2) -> str:
    """``v`` with ``nd`` decimals; ``n/a`` for None, NaN or inf."""
    return f"{v:.{nd}f}" if isinstance(v, int | float) and math.isfinite(v) else "n/a"


def fmt_ratio(r: Ratio | None, pct: bool = False, counts: bool = True) -> str:
    """``1.08x [0.95, 1.20] (n=24, 6 clusters)`` or ``97.3% [90.1, 104.2] (...)``."""
    if r is None:
        return "not run"
    if not math.isfinite(r.ratio):
        return "n/a (baseline is 0)"
    scale, unit, nd = (100, "%", 1) if pct else (1, "x", 2)
    s = f"{fmt_num(r.ratio * scale, nd)}{unit}"
    if math.isfinite(r.low):
        s += f" [{fmt_num(r.low * scale, nd)}, {fmt_num(r.high * scale, nd)}]"
    if counts:
        s += f" (n={r.n}, {r.n_clusters} clusters)"
    return s
