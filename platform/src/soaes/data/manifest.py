"""Per-source accounting (every record ends in exactly one bucket), manifest and summary table.

Each input record gets one outcome: ``out`` (written), ``quarantined:<reason>``,
``filtered:<reason>``, ``exact_dup`` or ``near_dup``. Counting outcomes per source makes
``docs_in = docs_out + filtered + exact_dups + near_dups + quarantined`` hold by
construction; :func:`check_balance` verifies it anyway before the manifest is written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def outcome_counts(sources: np.ndarray, outcomes: np.ndarray, order: list[str]) -> dict[str, dict]:
    """Per source: docs_in, docs_out, quarantined/filtered by reason, exact_dups, near_dups."""
    result = {}
    for name in order:
        c = Counter(outcomes[sources == name].tolist())
        entry = {
            "docs_in": int(sum(c.values())),
            "docs_out": c.pop("out", 0),
            "exact_dups": c.pop("exact_dup", 0),
            "near_dups": c.pop("near_dup", 0),
            "quarantined": {},
            "filtered": {},
        }
        for key, n in sorted(c.items()):
            kind, _, reason = key.partition(":")
            if kind not in ("quarantined", "filtered") or not reason:
                raise ValueError(f"unknown outcome {key!r}")
            entry[kind][reason] = n
        result[name] = entry
    return result


def check_balance(counts: dict[str, dict]) -> None:
    """Raise if ``in != out + filtered + deduped + quarantined`` for any source."""
    for name, c in counts.items():
        rest = (
            c["docs_out"]
            + sum(c["filtered"].values())
            + sum(c["quarantined"].values())
            + c["exact_dups"]
            + c["near_dups"]
        )
        if rest != c["docs_in"]:
            raise AssertionError(f"source {name}: docs_in {c['docs_in']} != accounted {rest}")


def outcome_totals(counts: Iterable[dict]) -> dict[str, int]:
    """Records by outcome over per-source counts (the ``soaes_data_records`` series).

    Returns:
        ``kept`` (docs_out), ``filtered`` (all reasons), ``deduped`` (exact + near
        duplicates) and ``quarantined`` (all reasons).
    """
    totals = {"kept": 0, "filtered": 0, "deduped": 0, "quarantined": 0}
    for c in counts:
        totals["kept"] += c["docs_out"]
        totals["filtered"] += sum(c["filtered"].values())
        totals["deduped"] += c["exact_dups"] + c["near_dups"]
        totals["quarantined"] += sum(c["quarantined"].values())
    return totals


def write_json(path: Path, body: dict) -> None:
    """Write JSON atomically (a crash never leaves a half manifest)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        json.dumps(body, indent=2, ensure_ascii=False, sort_keys=False), encoding="utf-8"
    )
    os.replace(tmp, path)


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Write JSON lines atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width text table (first column left-aligned, others right-aligned)."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
        for i, c in enumerate(columns)
    ]

    def line(vals):
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        )

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def source_rows(counts: dict[str, dict]) -> list[dict]:
    """Summary-table rows from per-source counts (reasons folded into totals)."""
    rows = []
    for name, c in counts.items():
        row = {k: v for k, v in c.items() if not isinstance(v, dict)}
        row = {
            "source": name,
            **row,
            "quarantined": sum(c["quarantined"].values()),
            "filtered": sum(c["filtered"].values()),
        }
        rows.append(row)
    return rows
