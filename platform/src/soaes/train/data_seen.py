"""``data_seen.json``: what one training stage consumed, per data source.

Ablation arms are compared at parity: the same examples and tokens per source, optimizer
steps and learning rate. Each SFT stage writes this record at its end, from the rows and
tokens of each source folder and the share of an epoch the optimizer steps covered. A
mixed stage (single-stage SFT) shuffles its sources with a seeded uniform shuffle, so each
source's share of what was seen is its share of the rows: the record says so in ``method``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from soaes.config.train import OptimSpec

DATA_SEEN = "data_seen.json"
METHOD = (
    "rows x epochs trained; epochs trained = optimizer steps x global batch rows / rows "
    "(a mixed stage's sources in proportion to their rows)"
)


def source_counts(folder: str) -> tuple[int, int]:
    """Rows and tokens (``input_ids`` lengths) of the parquet files in one folder."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows = tokens = 0
    for f in sorted(Path(folder).glob("*.parquet")):
        col = pq.read_table(f, columns=["input_ids"]).column("input_ids")
        rows += len(col)
        tokens += int(pc.sum(pc.list_value_length(col)).as_py() or 0)
    return rows, tokens


def data_seen_record(
    sources: dict[str, tuple[int, int]],
    steps: int,
    global_batch_rows: int,
    optim: OptimSpec,
    init_from: str,
) -> dict[str, Any]:
    """The record: per source ``{rows, tokens, examples_seen, tokens_seen}`` and the run's
    steps, peak LR, schedule and starting checkpoint (pure; see :func:`write_data_seen`)."""
    total_rows = sum(r for r, _ in sources.values())
    epochs = steps * global_batch_rows / total_rows if total_rows else 0.0
    return {
        "steps": steps,
        "global_batch_rows": global_batch_rows,
        "epochs_trained": epochs,
        "peak_lr": optim.lr,
        "schedule": optim.schedule,
        "warmup_steps": optim.warmup_steps,
        "warmup_ratio": optim.warmup_ratio,
        "init_from": init_from,
        "method": METHOD,
        "sources": {
            name: {
                "rows": rows,
                "tokens": tokens,
                "examples_seen": rows * epochs,
                "tokens_seen": tokens * epochs,
            }
            for name, (rows, tokens) in sources.items()
        },
    }


def write_data_seen(
    run_dir: Path,
    source_dirs: dict[str, str],
    steps: int,
    global_batch_rows: int,
    optim: OptimSpec,
    init_from: str,
) -> Path:
    """Count each source folder and write ``<run_dir>/data_seen.json``."""
    sources = {name: source_counts(d) for name, d in source_dirs.items()}
    record = data_seen_record(sources, steps, global_batch_rows, optim, init_from)
    path = Path(run_dir) / DATA_SEEN
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path
