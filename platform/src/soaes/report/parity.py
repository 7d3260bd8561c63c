"""Parity of two ablation arms, from their training runs' ``data_seen.json`` files.

An SFT run folder holds ``summary.json`` (its stages, in order) and, per stage,
``<stage>/data_seen.json`` (written by :mod:`soaes.train.data_seen`). Two arms are
comparable when they trained on the same sources, saw tokens per source within
``TOKEN_TOLERANCE``, took the same optimizer steps with the same peak LR per source and,
when the claim is not about the start, started from the same checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from soaes.report.schema import Parity, ParityArm, ParitySource

TOKEN_TOLERANCE = 0.05
STEP_SLACK = 1  # optimizer steps two arms may differ by (a partial last batch per stage)
DATA_SEEN = "data_seen.json"  # soaes.train.data_seen.DATA_SEEN (train is not imported here)


def read_arm(model: str, run_dir: str | Path) -> ParityArm:
    """One arm's totals over its stages; raises FileNotFoundError naming a missing file."""
    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    stages = [st["stage"] for st in summary["stages"]]
    records = [json.loads((run / s / DATA_SEEN).read_text(encoding="utf-8")) for s in stages]
    seen: dict[str, dict] = {}
    for rec in records:
        for name, src in rec["sources"].items():
            acc = seen.setdefault(name, {"examples": 0.0, "tokens": 0.0, "lr": [], "sched": []})
            acc["examples"] += src["examples_seen"]
            acc["tokens"] += src["tokens_seen"]
            acc["lr"].append(rec["peak_lr"])
            acc["sched"].append(rec["schedule"])
    return ParityArm(
        model=model,
        run_dir=str(run),
        start=records[0]["init_from"],
        steps=sum(r["steps"] for r in records),
        sources=[
            ParitySource(
                source=name,
                examples=a["examples"],
                tokens=a["tokens"],
                peak_lr=max(a["lr"]),
                schedule="+".join(dict.fromkeys(a["sched"])),
            )
            for name, a in seen.items()
        ],
    )


def parity_reasons(a: ParityArm, b: ParityArm, same_start: bool) -> list[str]:
    """Where two arms differ beyond the tolerance (empty: at parity)."""
    reasons = []
    sa, sb = {s.source: s for s in a.sources}, {s.source: s for s in b.sources}
    if set(sa) != set(sb):
        reasons.append(f"sources differ: {sorted(sa)} vs {sorted(sb)}")
    for name in sorted(set(sa) & set(sb)):
        x, y = sa[name], sb[name]
        if abs(x.tokens - y.tokens) > TOKEN_TOLERANCE * max(x.tokens, y.tokens):
            reasons.append(f"{name}: tokens seen {x.tokens:.0f} vs {y.tokens:.0f}")
        if x.peak_lr != y.peak_lr:
            reasons.append(f"{name}: peak LR {x.peak_lr:g} vs {y.peak_lr:g}")
    # one step per stage boundary is rounding (a partial last batch), not a different budget
    if abs(a.steps - b.steps) > max(STEP_SLACK, TOKEN_TOLERANCE * max(a.steps, b.steps)):
        reasons.append(f"optimizer steps {a.steps} vs {b.steps}")
    if same_start and Path(a.start).resolve() != Path(b.start).resolve():
        reasons.append(f"starting checkpoints differ: {a.start} vs {b.start}")
    return reasons


def parity(before: tuple[str, str], after: tuple[str, str], same_start: bool) -> Parity:
    """The parity table of two arms ``(model name, run dir)``; missing files: not comparable."""
    tolerance = (
        f"same sources, tokens per source within {TOKEN_TOLERANCE:.0%}, optimizer steps within "
        f"{STEP_SLACK} or {TOKEN_TOLERANCE:.0%}, "
        "same peak LR per source" + (", same starting checkpoint" if same_start else "")
    )
    try:
        arms = [read_arm(*before), read_arm(*after)]
    except (FileNotFoundError, KeyError) as e:
        return Parity(arms=[], tolerance=tolerance, comparable=False, reasons=[f"unknown: {e}"])
    reasons = parity_reasons(*arms, same_start=same_start)
    return Parity(arms=arms, tolerance=tolerance, comparable=not reasons, reasons=reasons)
