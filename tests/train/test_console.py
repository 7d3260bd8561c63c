"""Console routing of training workers: soaes' lines and warnings on the terminal, Ray's and
DeepSpeed's INFO lines only in the run's log file; the progress line's ETA."""

from __future__ import annotations

import io
import logging

from soaes.train.console import route_worker_logs
from soaes.train.metrics import format_duration, progress_line


def test_worker_console_keeps_soaes_lines_and_files_everything(tmp_path):
    stream = io.StringIO()
    root = logging.getLogger("fake_root")
    root.setLevel(logging.INFO)
    root.handlers = [logging.StreamHandler(stream)]
    path = route_worker_logs(tmp_path, rank=1, loggers=("fake_root",))
    route_worker_logs(tmp_path, rank=1, loggers=("fake_root",))  # idempotent
    assert path == tmp_path / "logs" / "worker_1.log" and len(root.handlers) == 2
    ray_line = "Reporting training result 7: TrainingReport(checkpoint=None, metrics={})"
    for name, level, msg in (
        ("/site-packages/ray/train/v2/_internal/execution/context.py", logging.INFO, ray_line),
        ("soaes.train.loop", logging.INFO, "[cpt_tiny] step 5/60 | loss 6.1"),
        ("deepspeed.runtime", logging.WARNING, "grad overflow"),
        ("py.warnings", logging.WARNING, "FutureWarning: all_gather_into_tensor is deprecated"),
    ):
        root.handle(logging.LogRecord(name, level, __file__, 1, msg, None, None))
    console, in_file = stream.getvalue(), path.read_text()
    assert "Reporting training result" not in console and "deprecated" not in console
    assert "[cpt_tiny] step 5/60" in console and "grad overflow" in console
    assert all(s in in_file for s in ("Reporting training result 7", "step 5/60", "overflow"))
    assert "all_gather_into_tensor is deprecated" in in_file
    for h in root.handlers:
        h.close()
    logging.captureWarnings(False)


def test_progress_line_shows_loss_throughput_and_eta():
    rec = {"step": 20, "loss": 2.5, "tokens_per_s": 1234.4, "step_time_s": 0.5, "lr": 1e-4}
    line = progress_line({**rec, "grad_norm": 0.7}, total_steps=200)
    assert line.startswith("step 20/200 | loss 2.5000 | 1234 tok/s | 0.50 s/step | eta 1m30s")
    assert [format_duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]
