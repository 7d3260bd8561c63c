"""Where a DeepSpeed step spends time beyond a plain PyTorch step (torch profiler, CPU).

One process, one thread, world size 1: the same tiny model and packed batches through a plain
loop (AdamW, clipping) and through a DeepSpeed engine at ZeRO stage 0 and 2 (the project's
engine builder). Prints the operators whose self CPU time per step differs most from the plain
loop's. Needs the bench data: run ``soaes bench train`` once first.

    python scripts/profile_train_step.py --data runs/bench_train/data_tiny_target_seq128
"""

from __future__ import annotations

import argparse
import os


def profile(step, batches: list) -> dict[str, float]:
    """Self CPU microseconds per step of each operator over ``batches`` (after 3 warm-up)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for b in batches[:3]:
        step(b)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches[3:]:
            step(b)
    n = len(batches) - 3
    return {a.key: a.self_cpu_time_total / n for a in prof.key_averages()}


def plain_step(path: str):
    """A plain fp32 training step: forward, backward, clip, AdamW."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))

    def step(b):
        model(**b).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def engine_step(path: str, zero: int, micro_batch: int):
    """A step of the project's DeepSpeed engine at ``zero`` (kept at one worker)."""
    from soaes.config.train import DeepSpeedSpec, OptimSpec
    from soaes.train.ds_config import build_ds_config
    from soaes.train.engine import configure_worker, create_engine, load_causal_lm

    configure_worker(0)
    spec = DeepSpeedSpec(zero_stage=zero, zero_on_one_worker=True)
    optim = OptimSpec(lr=1e-5, grad_clip=1.0, schedule="constant")
    cfg = build_ds_config(spec, optim, micro_batch, 1, world_size=1)
    model, _ = load_causal_lm(path, cfg)
    engine = create_engine(model, cfg, optim, 100)

    def step(b):
        engine.backward(engine(**b).loss)
        engine.step()

    return step


def main() -> None:
    """Profile the plain loop and the engine at ZeRO 0 and 2; print the largest differences."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="packed CPT data folder (has train/)")
    p.add_argument("--model", default="tiny/target")
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="profiled steps (after 3 warm-up)")
    p.add_argument("--top", type=int, default=6)
    a = p.parse_args()
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    import deepspeed
    import torch

    from soaes.models.presets import resolve
    from soaes.train.data import collate_cpt, read_rows, rows_to_micro_batches

    torch.set_num_threads(1)
    deepspeed.init_distributed("gloo")
    path, n = resolve(a.model), (a.steps + 3) * a.micro_batch
    rows = read_rows([os.path.join(a.data, "train")], n, ["input_ids", "position_ids", "n_pad"])
    batches = rows_to_micro_batches(rows, 0, 1, a.micro_batch, collate_cpt)
    base = profile(plain_step(path), batches)
    for zero in (0, 2):
        got = profile(engine_step(path, zero, a.micro_batch), batches)
        diff = {k: got.get(k, 0.0) - base.get(k, 0.0) for k in set(got) | set(base)}
        total = sum(got.values()) - sum(base.values())
        print(f"ZeRO-{zero} minus plain: {total / 1e3:+.1f} ms self CPU per step; largest:")
        for k in sorted(diff, key=lambda k: -abs(diff[k]))[: a.top]:
            print(f"  {k[:56]:56s} {base.get(k, 0) / 1e3:7.2f} -> {got.get(k, 0) / 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
