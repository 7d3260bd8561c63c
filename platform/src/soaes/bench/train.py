"""``soaes bench train``: the Ray Train + DeepSpeed loop against a plain PyTorch loop.

Prints, from one run on the same machine, for each micro-batch size (``--repeats`` plain/Ray
pairs run alternately; median and min-max of each figure):

1. steady-state tokens/s of the real CPT stack (``run_cpt``: Ray Train workers, DeepSpeed
   engine, Ray Data input) against a single-process PyTorch loop with the same model,
   micro-batch, loss and optimizer, per core on CPU (goal >= 0.9) or per GPU on CUDA;
2. time from submit (the driver starting the run) to the first optimizer step;
3. on CUDA: model FLOPs utilisation of both against the measured bf16 matmul peak.

``--device cpu`` (default): the tiny preset in fp32, torch AdamW on both sides, one core
each. ``--device cuda``: bf16 on one GPU; the project's optimizer there is
``torch.optim.AdamW(fused=True)`` under DeepSpeed (fp32 master weights, bf16 compute), the
plain loop uses the same fused AdamW on fp32 weights under bf16 autocast; both load the
model the same way, so they use the same attention implementation (reported). Without CUDA
it prints why and exits 0.

The packed data comes from the real ``data_cpt`` pipeline (law articles + People's Daily),
tokenised for the benchmarked model, built once under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

CPU_DEFAULTS = {"model": "tiny/target", "seq_len": 128}
CUDA_DEFAULTS = {"model": "smollm2/base", "seq_len": 1024}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    p = argparse.ArgumentParser(prog="soaes bench train", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    p.add_argument(
        "--model",
        default=None,
        help="model handle or folder (cpu: tiny/target, cuda: smollm2/base)",
    )
    p.add_argument(
        "--seq-len", type=int, default=None, help="tokens per packed block (cpu: 128, cuda: 1024)"
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        nargs="+",
        default=[16, 64],
        help="sequences per worker per step; one comparison per value",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="Ray Train workers (1 core or 1 GPU each)"
    )
    p.add_argument("--zero", type=int, default=2, help="DeepSpeed ZeRO stage of the Ray run")
    p.add_argument(
        "--zero-on-one-worker",
        action="store_true",
        help="keep --zero at one worker (deepspeed.zero_on_one_worker; default: stage 0 there)",
    )
    p.add_argument("--steps", type=int, default=20, help="measured steps (after warm-up)")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="plain/Ray pairs per micro-batch, run alternately; figures are their median",
    )
    p.add_argument("--warmup", type=int, default=3, help="steps excluded from tokens/s")
    p.add_argument("--work-dir", default="runs/bench_train", help="data and run folders")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    defaults = CUDA_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    args.model = args.model or defaults["model"]
    args.seq_len = args.seq_len or defaults["seq_len"]
    return args


def cuda_skip_reason() -> str | None:
    """Why a CUDA benchmark cannot run here (None: it can)."""
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__})"
    return None


def build_data(args: argparse.Namespace, work: Path) -> Path:
    """Packed CPT shards for the benchmarked model (the real data pipeline; cached)."""
    from soaes.config.data import DataCPTConfig
    from soaes.data.pipeline import run_cpt_data

    tag = args.model.replace("/", "_")
    out = work / f"data_{tag}_seq{args.seq_len}"
    if (out / "manifest.json").exists():
        return out
    cfg = DataCPTConfig(
        name="bench_train_data",
        output_dir=str(out),
        tokenizer=args.model,
        seq_len=args.seq_len,
        sources=[
            {"name": "laws", "group": "domain", "max_docs": 1500},
            {"name": "peoples_daily", "group": "general", "max_docs": 1500},
        ],
        mix={"ratio": {"domain": 1.0, "general": 1.0}},
        dedup={"num_perm": 64, "bands": 16},
        validation_fraction=0.02,
    )
    run_cpt_data(cfg)
    return out


def steady_rate(train: list[dict[str, Any]], warmup: int) -> dict[str, float]:
    """Tokens/s and s/step over the ``train`` records after step ``warmup`` (each record
    covers the steps since the previous one: ``step_time_s`` is their mean)."""
    tokens = seconds = steps = 0.0
    prev = None
    for r in sorted(train, key=lambda r: r["step"]):
        if prev is not None and prev["step"] >= warmup:
            n = r["step"] - prev["step"]
            tokens += r["tokens"] - prev["tokens"]
            seconds += r["step_time_s"] * n
            steps += n
        prev = r
    if not seconds:
        raise ValueError(f"no train record after warm-up step {warmup}")
    return {"tokens_per_s": tokens / seconds, "step_time_s": seconds / steps}


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def plain_loop(model_path: str, data: Path, mb: int, args: argparse.Namespace) -> dict[str, Any]:
    """Single process: the same model, micro-batch, AdamW and loss; tokens/s after warm-up.

    CPU: one thread, fp32, torch AdamW. CUDA: fp32 master weights, bf16 autocast, fused AdamW.
    """
    import contextlib
    import itertools

    import torch
    from transformers import AutoModelForCausalLM

    from soaes.train.data import collate_cpt, read_rows, rows_to_micro_batches

    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    n = (args.warmup + args.steps) * mb
    rows = read_rows([str(data / "train")], n, ["input_ids", "position_ids", "n_pad"])
    batches = rows_to_micro_batches(rows, 0, 1, mb, collate_cpt)
    batches = itertools.islice(itertools.cycle(batches), args.warmup + args.steps)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    model.to(args.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), fused=cuda or None)
    autocast = torch.autocast("cuda", torch.bfloat16) if cuda else contextlib.nullcontext()
    tokens, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == args.warmup:
            _sync(args.device)
            tokens, t0 = 0, time.perf_counter()
        tokens += int((b["labels"] != -100).sum())  # counted on the host copy: no device sync
        b = {k: v.to(args.device, non_blocking=True) for k, v in b.items()}
        with autocast:
            loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(args.device)
    dt = time.perf_counter() - t0
    attn = model.config._attn_implementation
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
    return {"tokens_per_s": tokens / dt, "step_time_s": dt / args.steps, "attention": attn}


def ray_run(
    data: Path, args: argparse.Namespace, mb: int, name: str, peak: float | None
) -> dict[str, Any]:
    """The real CPT pipeline for warm-up + measured steps; figures from its metrics.jsonl."""
    from soaes.config.train import CPTConfig
    from soaes.train.cpt import run_cpt
    from soaes.train.metrics import read_jsonl

    out = Path(args.work_dir) / name
    shutil.rmtree(out, ignore_errors=True)
    cuda = args.device == "cuda"
    cfg = CPTConfig(
        name=name,
        output_dir=str(out),
        data_dir=str(data),
        model={"path": args.model, "dtype": "bfloat16" if cuda else "float32"},
        scaling={"num_workers": args.workers, "cpus_per_worker": 1, "use_gpu": cuda},
        deepspeed={
            "zero_stage": args.zero,
            "zero_on_one_worker": args.zero_on_one_worker,
            "precision": "bf16" if cuda else "fp32",
            "optimizer": "torch_adamw",  # fused on CUDA (soaes.train.engine.create_engine)
        },
        optim={"lr": 1e-5, "grad_clip": 1.0, "schedule": "constant"},
        micro_batch_size=mb,
        max_steps=args.warmup + args.steps,
        checkpoint={"every_steps": 0, "at_end": False, "export_hf": False, "resume": False},
        fault={"max_failures": 0},
        # Logged every warm-up length: the loop syncs only there, as with any log interval.
        logging={
            "log_every_steps": max(args.warmup, 1),
            "eval_at_start": False,
            "peak_tflops_per_device": peak,
        },
        eval_groups=[],
    )
    run_cpt(cfg)
    recs = read_jsonl(out / "metrics.jsonl")
    train = [r for r in recs if r.get("event") == "train"]
    start = next(r for r in recs if r.get("event") == "start")
    first = next(r for r in recs if r.get("event") == "first_step")
    end = next(r for r in recs if r.get("event") == "end")
    return {
        **steady_rate(train, args.warmup),
        "worker_start_s": start["worker_start_s"],
        "engine_ready_s": start["engine_ready_s"],
        "submit_to_first_step_s": first["since_submit_s"],
        "zero_stage": start.get("zero_stage"),
        "peak_rss_mb": end["peak_rss_mb"],
    }


def matmul_peak_tflops(n: int = 8192, reps: int = 20) -> float:
    """Measured bf16 matmul throughput of this GPU (TFLOP/s): the MFU denominator."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def model_params(model_path: str) -> int:
    """Parameters of a model (from its config, on the meta device: nothing allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    return sum(p.numel() for p in model.parameters())


def pair(
    args: argparse.Namespace, data: Path, model_path: str, mb: int, peak: float | None
) -> dict[str, Any]:
    """One repetition: the plain loop, then the Ray run; ratio per core/GPU and MFU."""
    from soaes.train.metrics import mfu

    plain = plain_loop(model_path, data, mb, args)
    ray = ray_run(data, args, mb, f"{args.device}_mb{mb}", peak)
    row = {"plain": plain, "ray": ray}
    row["ratio_per_device"] = ray["tokens_per_s"] / args.workers / plain["tokens_per_s"]
    if peak:
        n = model_params(model_path)
        row["mfu_plain"] = mfu(plain["tokens_per_s"], n, 1, peak)
        row["mfu_ray"] = mfu(ray["tokens_per_s"], n, args.workers, peak)
    return row


def compare(
    args: argparse.Namespace, data: Path, model_path: str, mb: int, peak: float | None
) -> dict[str, Any]:
    """One micro-batch size: ``args.repeats`` plain/Ray pairs, run alternately so that a
    change of machine load falls on both sides; each figure's median and min-max."""
    from soaes.eval.spec_bound import spread

    reps = [pair(args, data, model_path, mb, peak) for _ in range(args.repeats)]
    row: dict[str, Any] = {"micro_batch": mb, "repetitions": reps}
    figures = {
        "ratio_per_device": [r["ratio_per_device"] for r in reps],
        "plain_step_time_s": [r["plain"]["step_time_s"] for r in reps],
        "ray_step_time_s": [r["ray"]["step_time_s"] for r in reps],
        "submit_to_first_step_s": [r["ray"]["submit_to_first_step_s"] for r in reps],
    }
    if peak:
        figures["mfu_plain"] = [r["mfu_plain"] for r in reps]
        figures["mfu_ray"] = [r["mfu_ray"] for r in reps]
    row.update({k: spread(v) for k, v in figures.items()})
    row["zero_stage"] = reps[0]["ray"]["zero_stage"]
    row["attention"] = reps[0]["plain"]["attention"]
    return row


def _fmt(s: dict[str, float], scale: float = 1.0, digits: int = 0) -> str:
    """``median (min-max)``."""
    m, lo, hi = (round(s[k] * scale, digits) for k in ("median", "min", "max"))
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def report(fig: dict[str, Any]) -> str:
    """The printed table: medians over the repetitions with their min-max."""
    unit = "GPU" if fig["device"] == "cuda" else "core"
    lines = [
        f"model {fig['model']} ({fig['params'] / 1e6:.1f}M), seq_len {fig['seq_len']}, "
        f"{fig['device']}, {fig['workers']} Ray Train worker(s) x 1 {unit}, ZeRO-{fig['zero']} "
        f"configured, {fig['steps']} measured steps after {fig['warmup']} warm-up, "
        f"{fig['repeats']} alternating repetitions (median (min-max))",
    ]
    if fig.get("peak_tflops"):
        lines.append(f"measured bf16 matmul peak: {fig['peak_tflops']:.0f} TFLOP/s")
    for r in fig["runs"]:
        mfu = ""
        if "mfu_ray" in r:
            mfu = f", MFU {_fmt(r['mfu_plain'], 100, 1)}% / {_fmt(r['mfu_ray'], 100, 1)}%"
        lines += [
            f"micro-batch {r['micro_batch']}: plain {_fmt(r['plain_step_time_s'], 1e3)} ms/step"
            f" | Ray Train + DeepSpeed (ZeRO-{r['zero_stage']} run) "
            f"{_fmt(r['ray_step_time_s'], 1e3)} ms/step | ratio per {unit} "
            f"{_fmt(r['ratio_per_device'], 1, 3)} (goal >= 0.9){mfu}",
            f"  submit -> first step {_fmt(r['submit_to_first_step_s'], 1, 1)} s; "
            f"attention {r['attention']}",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``soaes bench train``."""
    args = parse_args(argv)
    if args.device == "cuda" and (reason := cuda_skip_reason()):
        print(f"soaes bench train --device cuda: skipped: {reason}")
        if args.json:
            Path(args.json).write_text(json.dumps({"device": "cuda", "skipped": reason}))
        return 0
    from soaes.models.presets import resolve
    from soaes.ray_env import connect
    from soaes.train.engine import prebuild_ops

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.device == "cpu":
        prebuild_ops()  # compiled once, outside every measured region
    connect(num_cpus=max(4, args.workers + 2))
    data = build_data(args, work)
    model_path = resolve(args.model)
    peak = matmul_peak_tflops() if args.device == "cuda" else None
    fig: dict[str, Any] = {
        "device": args.device,
        "model": args.model,
        "params": model_params(model_path),
        "seq_len": args.seq_len,
        "workers": args.workers,
        "zero": args.zero,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "peak_tflops": peak,
        "runs": [compare(args, data, model_path, mb, peak) for mb in args.micro_batch],
    }
    print(report(fig))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0
