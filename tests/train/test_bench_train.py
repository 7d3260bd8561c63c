"""``soaes bench train``: the CUDA side-by-side skips cleanly without a GPU; the steady-state
rate leaves the warm-up out and weighs each logged interval by its steps."""

from __future__ import annotations

import json

import pytest
import torch

from soaes.bench.train import main, parse_args, steady_rate


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_bench_skips_without_cuda(tmp_path, capsys):
    out = tmp_path / "fig.json"
    work = tmp_path / "work"
    assert main(["--device", "cuda", "--json", str(out), "--work-dir", str(work)]) == 0
    said = capsys.readouterr().out
    assert "skipped: no CUDA device" in said
    assert json.loads(out.read_text())["skipped"].startswith("no CUDA device")
    assert not work.exists()  # nothing built, no Ray started


def test_device_defaults():
    cpu, cuda = parse_args([]), parse_args(["--device", "cuda", "--micro-batch", "8"])
    assert (cpu.model, cpu.seq_len, cpu.micro_batch) == ("tiny/target", 128, [16, 64])
    assert (cuda.model, cuda.seq_len, cuda.micro_batch) == ("smollm2/base", 1024, [8])


def test_steady_rate_excludes_warmup_and_weighs_intervals():
    recs = [  # logged at step 1, every 3 steps, and the last step (13)
        {"step": 1, "tokens": 100, "step_time_s": 9.0},
        {"step": 3, "tokens": 300, "step_time_s": 1.0},
        {"step": 6, "tokens": 600, "step_time_s": 0.5},
        {"step": 12, "tokens": 1200, "step_time_s": 0.25},
        {"step": 13, "tokens": 1300, "step_time_s": 0.5},
    ]
    got = steady_rate(recs, warmup=3)
    seconds = 3 * 0.5 + 6 * 0.25 + 1 * 0.5
    assert got["tokens_per_s"] == pytest.approx(1000 / seconds)
    assert got["step_time_s"] == pytest.approx(seconds / 10)
    with pytest.raises(ValueError, match="no train record after warm-up"):
        steady_rate(recs[:2], warmup=3)
