"""``soaes bench train``: the Ray Train + DeepSpeed loop against a plain PyTorch loop.

Prints, from one run on the same machine:

1. steady-state tokens/s per core of the real CPT stack (``run_cpt``: Ray Train workers,
   DeepSpeed engine, Ray Data input) against a single-process PyTorch loop with the same
   model, micro-batch and optimizer (AdamW) on one core; the ratio (goal >= 0.9);
2. time from submit (the driver starting the run) to the first optimizer step, with its parts;
3. peak resident memory per worker for ZeRO-2 and ZeRO-3.

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


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    p = argparse.ArgumentParser(prog="soaes bench train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2/base", help="model handle or folder (demo model)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per packed block")
    p.add_argument("--micro-batch", type=int, default=2, help="sequences per worker per step")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers (1 CPU each)")
    p.add_argument("--steps", type=int, default=6, help="measured steps (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="steps excluded from tokens/s")
    p.add_argument("--mem-steps", type=int, default=2, help="steps of the ZeRO-2/3 memory runs")
    p.add_argument("--work-dir", default="runs/bench_train", help="data and run folders")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


def build_data(args: argparse.Namespace, work: Path) -> Path:
    """Packed CPT shards for the benchmarked model (the real data pipeline; cached)."""
    from soaes.config.data import DataCPTConfig
    from soaes.data.pipeline import run_cpt_data

    out = work / f"data_seq{args.seq_len}"
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


def plain_loop(model_path: str, data: Path, args: argparse.Namespace) -> dict[str, float]:
    """Single process, one thread: the same model, micro-batch, AdamW, loss; tokens/s."""
    import torch
    from transformers import AutoModelForCausalLM

    from soaes.train.data import collate_cpt, read_rows, rows_to_micro_batches

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n = (args.warmup + args.steps) * args.micro_batch
    rows = read_rows([str(data / "train")], n, ["input_ids", "position_ids", "n_pad"])
    batches = rows_to_micro_batches(rows, 0, 1, args.micro_batch, collate_cpt)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    tokens, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == args.warmup:
            tokens, t0 = 0, time.perf_counter()
        loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int((b["labels"] != -100).sum())
    dt = time.perf_counter() - t0
    del model, opt
    return {"tokens_per_s": tokens / dt, "step_time_s": dt / args.steps, "cores": 1}


def ray_run(
    data: Path, args: argparse.Namespace, zero: int, steps: int, name: str
) -> dict[str, Any]:
    """The real CPT pipeline for ``steps`` steps; figures from its metrics.jsonl."""
    from soaes.config.train import CPTConfig
    from soaes.train.cpt import run_cpt
    from soaes.train.metrics import read_jsonl

    out = Path(args.work_dir) / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = CPTConfig(
        name=name,
        output_dir=str(out),
        data_dir=str(data),
        model={"path": args.model},
        scaling={"num_workers": args.workers, "cpus_per_worker": 1},
        deepspeed={"zero_stage": zero},
        optim={"lr": 1e-5, "grad_clip": 1.0, "schedule": "constant"},
        micro_batch_size=args.micro_batch,
        max_steps=steps,
        checkpoint={"every_steps": 0, "at_end": False, "export_hf": False, "resume": False},
        fault={"max_failures": 0},
        logging={"log_every_steps": 1, "eval_at_start": False},
        eval_groups=[],
    )
    run_cpt(cfg)
    recs = read_jsonl(out / "metrics.jsonl")
    train = [r for r in recs if r.get("event") == "train"][args.warmup :]
    start = next(r for r in recs if r.get("event") == "start")
    first = next(r for r in recs if r.get("event") == "first_step")
    end = next(r for r in recs if r.get("event") == "end")
    tokens = sum(r["tokens_per_s"] * r["step_time_s"] for r in train)
    seconds = sum(r["step_time_s"] for r in train)
    return {
        "tokens_per_s": tokens / seconds if seconds else None,
        "step_time_s": seconds / len(train) if train else None,
        "cores": args.workers,
        "worker_start_s": start["worker_start_s"],
        "engine_ready_s": start["engine_ready_s"],
        "submit_to_first_step_s": first["since_submit_s"],
        "peak_rss_mb": end["peak_rss_mb"],
    }


def report(fig: dict[str, Any]) -> str:
    """The printed table."""
    plain, ds = fig["plain"], fig["ray_zero2"]
    per_core_plain = plain["tokens_per_s"] / plain["cores"]
    per_core_ds = ds["tokens_per_s"] / ds["cores"]
    lines = [
        f"model {fig['model']}, seq_len {fig['seq_len']}, micro-batch {fig['micro_batch']} per worker, "
        f"AdamW, fp32, {fig['steps']} measured steps after {fig['warmup']} warm-up",
        f"plain PyTorch, 1 process x 1 core : {plain['tokens_per_s']:8.1f} tok/s  "
        f"({per_core_plain:.1f} tok/s/core, {plain['step_time_s']:.2f} s/step)",
        f"Ray Train + DeepSpeed ZeRO-2, {ds['cores']} x 1 core: {ds['tokens_per_s']:8.1f} tok/s  "
        f"({per_core_ds:.1f} tok/s/core, {ds['step_time_s']:.2f} s/step)",
        f"ratio per core (goal >= 0.9)        : {per_core_ds / per_core_plain:.3f}",
        f"submit -> first step                : {ds['submit_to_first_step_s']:.1f} s "
        f"(workers up {ds['worker_start_s']:.1f} s, engine ready {ds['engine_ready_s']:.1f} s)",
    ]
    for z in ("ray_zero2", "ray_zero3"):
        rss = ", ".join(f"{m:.0f}" for m in fig[z]["peak_rss_mb"])
        lines.append(f"peak RSS per worker, {z[4:].upper():<6}        : [{rss}] MB")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of ``soaes bench train``."""
    from soaes.models.presets import resolve
    from soaes.ray_env import connect
    from soaes.train.engine import prebuild_ops

    args = parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    prebuild_ops()  # compiled once, outside every measured region
    connect(num_cpus=max(4, args.workers + 2))
    data = build_data(args, work)
    fig: dict[str, Any] = {
        "model": args.model,
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    fig["plain"] = plain_loop(resolve(args.model), data, args)
    fig["ray_zero2"] = ray_run(data, args, 2, args.warmup + args.steps, "zero2")
    fig["ray_zero3"] = ray_run(data, args, 3, args.mem_steps, "zero3")
    fig["ratio_per_core"] = (fig["ray_zero2"]["tokens_per_s"] / args.workers) / fig["plain"][
        "tokens_per_s"
    ]
    print(report(fig))
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0
