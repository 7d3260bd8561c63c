"""``soaes bench spec``: distilled vs undistilled draft, and speculation vs the target alone.

One run, same held-out prompts, greedy, vLLM on this machine::

    soaes bench spec --config pipelines/distill_demo.yaml [--steps N] [--quick]

1. If the run folder of the config has no distilled draft yet (``hf/``), the distillation
   pipeline runs first (``--steps`` caps its optimizer steps).
2. The target alone, the draft alone (for c) and target + draft for each k are run for the
   undistilled draft (``draft_init/``) and the distilled one (``hf/``).
3. Printed: acceptance rate, mean acceptance length and its distilled/undistilled ratio
   (goal >= 1.3x); decode tokens/s of target + distilled draft over the target alone
   (goal >= 1.5x), the measured c, and the textbook bound (1-a^(k+1))/((1-a)(k*c+1)).
   Results go to ``<run_dir>/bench_spec/`` (acceptance.json, spec_decode.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

LENGTH_GOAL, SPEEDUP_GOAL = 1.3, 1.5


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soaes bench spec", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pipelines/distill_demo.yaml", help="distill pipeline YAML")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides of the config")
    p.add_argument("--steps", type=int, default=None, help="cap distillation steps (if it runs)")
    p.add_argument("--k", default=None, help="comma-separated k values, e.g. 1,2,3")
    p.add_argument("--num-prompts", type=int, default=None, help="held-out prompts")
    p.add_argument("--max-tokens", type=int, default=None, help="greedy tokens per prompt")
    p.add_argument("--quick", action="store_true", help="k=2 only, 8 prompts, 32 tokens")
    return p.parse_args(argv)


def _acceptance_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    ks = "2" if args.quick and not args.k else args.k
    if ks:
        out.append(f"acceptance.num_speculative_tokens=[{ks}]")
    n = args.num_prompts or (8 if args.quick else None)
    if n:
        out.append(f"acceptance.prompts.num_prompts={n}")
    m = args.max_tokens or (32 if args.quick else None)
    if m:
        out.append(f"acceptance.max_tokens={m}")
    return out


def _ensure_distilled(cfg: Any, steps: int | None) -> dict[str, Any] | None:
    """Run the distillation (without its own acceptance stage) unless hf/ exists."""
    from soaes.train.distill import run_distill

    if (Path(cfg.output_dir) / "hf" / "SOAES_EXPORT.json").is_file():
        return None
    update: dict[str, Any] = {"acceptance": None}
    if steps:
        update["max_steps"] = steps
    return run_distill(cfg.model_copy(update=update))


def report(result: dict[str, Any]) -> list[str]:
    """The printed table and headline ratios of a :func:`compare_drafts` result."""
    und, dis = result["drafts"]["undistilled"], result["drafts"]["distilled"]
    lines = [
        f"target {dis['target']}",
        f"prompts {dis['num_prompts']} x {dis['max_tokens']} "
        f"greedy tokens; target alone {dis['target_tokens_per_s']:.1f} tok/s; "
        f"c (draft/target step cost) = {dis['c']:.3f}",
        f"{'k':>2} {'acc undist':>10} {'acc dist':>9} {'len undist':>10} {'len dist':>9} "
        f"{'len ratio':>9} {'spec tok/s':>10} {'speed-up':>8} {'bound':>6} {'identical':>9}",
    ]
    for u, d in zip(und["rows"], dis["rows"], strict=True):
        lines.append(
            f"{d['k']:>2} {u['acceptance_rate']:>10.3f} {d['acceptance_rate']:>9.3f} "
            f"{u['mean_acceptance_length']:>10.3f} {d['mean_acceptance_length']:>9.3f} "
            f"{d['mean_acceptance_length'] / u['mean_acceptance_length']:>8.2f}x "
            f"{d['tokens_per_s']:>10.1f} {d['speedup_measured']:>7.2f}x "
            f"{d['speedup_theoretical']:>5.2f}x {str(d['outputs_identical']):>9}"
        )
    best = next(r for r in dis["rows"] if r["k"] == dis["best_k"])
    ratio = max(result["length_ratio"]["undistilled"].values())
    lines += [
        f"mean acceptance length distilled/undistilled: {ratio:.2f}x (goal >= {LENGTH_GOAL}x)",
        f"decode speed-up at best k={best['k']}: {best['speedup_measured']:.2f}x "
        f"(goal >= {SPEEDUP_GOAL}x; bound {best['speedup_theoretical']:.2f}x at "
        f"acceptance {best['acceptance_rate']:.3f}, c {dis['c']:.3f})",
        f"per-position acceptance (distilled, k={best['k']}): "
        + ", ".join(f"{x:.3f}" for x in best["per_position"]),
    ]
    return lines


def main(argv: list[str]) -> int:
    """Entry of ``soaes bench spec``; prints the comparison and returns 0."""
    from soaes.config.loader import load_config
    from soaes.eval.acceptance import compare_drafts
    from soaes.ray_env import connect

    args = _parse(argv)
    cfg = load_config(args.config, list(args.overrides) + _acceptance_overrides(args))
    if cfg.kind != "distill" or cfg.acceptance is None:
        raise SystemExit(f"{args.config}: need a 'distill' pipeline with an acceptance block")
    t0 = time.time()
    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    trained = _ensure_distilled(cfg, args.steps)
    run_dir = Path(cfg.output_dir).resolve()
    out_dir = run_dir / "bench_spec"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = str(Path(trained["target"] if trained else _target_of(run_dir)).resolve())
    result = compare_drafts(
        target,
        {"undistilled": str(run_dir / "draft_init"), "distilled": str(run_dir / "hf")},
        cfg.acceptance,
        out_dir,
    )
    lines = report(result)
    lines.append(f"wall time {time.time() - t0:.0f} s; results in {out_dir}")
    print("\n".join(lines))
    (out_dir / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


def _target_of(run_dir: Path) -> str:
    """The target folder recorded by the run's draft (``draft_init/draft.json``)."""
    from soaes.models.presets import resolve

    meta = run_dir / "draft_init" / "draft.json"
    if meta.is_file():
        return json.loads(meta.read_text(encoding="utf-8"))["target"]
    import yaml

    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text(encoding="utf-8"))
    return resolve(resolved["target"]["path"])
