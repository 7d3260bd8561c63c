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


def test_repetitions_summarised_as_median_and_range(monkeypatch):
    """Each repetition is one plain/Ray pair; every figure is reported as median (min-max)."""
    import soaes.bench.train as bench

    ratios = iter([(200.0, 210.0), (190.0, 230.0), (205.0, 205.0)])  # plain, Ray ms/step

    def fake_pair(args, data, model_path, mb, peak):
        p, r = next(ratios)
        return {
            "plain": {"step_time_s": p / 1e3, "attention": "sdpa"},
            "ray": {"step_time_s": r / 1e3, "submit_to_first_step_s": 10.0, "zero_stage": 0},
            "ratio_per_device": p / r,
        }

    monkeypatch.setattr(bench, "pair", fake_pair)
    args = parse_args(["--repeats", "3"])
    row = bench.compare(args, None, "m", 16, None)
    assert len(row["repetitions"]) == 3 and row["zero_stage"] == 0
    assert row["ratio_per_device"]["median"] == pytest.approx(200 / 210)
    assert row["ratio_per_device"]["min"] == pytest.approx(190 / 230)
    assert row["ratio_per_device"]["max"] == pytest.approx(1.0)
    assert row["ray_step_time_s"]["median"] == pytest.approx(0.210)
    fig = {
        "device": "cpu", "model": "m", "params": 1e6, "seq_len": 128, "workers": 1, "zero": 2,
        "steps": 20, "warmup": 3, "repeats": 3, "runs": [row],
    }  # fmt: skip
    text = bench.report(fig)
    assert "ratio per core 0.952 (0.826-1.000)" in text and "(ZeRO-0 run)" in text


def test_repeats_and_steps_must_be_positive():
    for bad in (["--repeats", "0"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
