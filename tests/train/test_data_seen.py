"""data_seen.json: per-source counts of one SFT stage (pure record + the parquet counter)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soaes.config.train import OptimSpec
from soaes.train.data_seen import data_seen_record, write_data_seen


def test_record_splits_epochs_over_sources_in_proportion_to_rows():
    optim = OptimSpec(lr=2e-5, schedule="linear")
    rec = data_seen_record({"chat": (300, 6000), "law": (100, 4000)}, 10, 20, optim, "/m")
    assert rec["epochs_trained"] == pytest.approx(0.5)  # 10 steps x 20 rows / 400 rows
    assert rec["sources"]["chat"]["examples_seen"] == pytest.approx(150)
    assert rec["sources"]["law"]["tokens_seen"] == pytest.approx(2000)
    assert rec["peak_lr"] == 2e-5 and rec["schedule"] == "linear" and rec["init_from"] == "/m"


def test_write_counts_rows_and_tokens_of_parquet_folders(tmp_path):
    src = tmp_path / "law" / "train"
    src.mkdir(parents=True)
    pq.write_table(pa.table({"input_ids": [[1, 2, 3], [4, 5]]}), src / "part-0.parquet")
    path = write_data_seen(tmp_path, {"law": str(src)}, 1, 2, OptimSpec(), "/m")
    rec = json.loads(path.read_text())
    assert rec["sources"]["law"] == {
        "rows": 2,
        "tokens": 5,
        "examples_seen": 2.0,
        "tokens_seen": 5.0,
    }
