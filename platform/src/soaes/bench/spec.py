"""``soaes bench spec``: every speculative candidate against the target alone, per step.

One run, same held-out prompts, greedy, vLLM on this machine::

    soaes bench spec --config pipelines/distill_demo.yaml [overrides] [--k 1,2,3]
        [--reps 3] [--out docs/bench/spec.json] [--no-undistilled] [--no-eagle3] [--serve 8]

Candidates are read from the distillation run folder of the config: the distilled draft
(``hf/``, vLLM ``draft_model``), the undistilled one (``draft_init/``) and an EAGLE-3 head
(``eagle3/``, vLLM ``eagle3``) when present; the distillation runs first when ``hf/`` is
missing. Per candidate and k: acceptance, c (draft step / target step), v_k (verification
of k+1 tokens / target step), the bound E/(k·c + v_k), decode speed-ups at batch 1 and at
the served batch (median, min-max over repetitions), greedy identity over every generated
token. Method: :mod:`soaes.eval.spec_steps`; model: :mod:`soaes.eval.spec_bound`.
Writes ``--out`` (default ``<run_dir>/bench_spec/spec.json``) and the run's
``bench_spec/spec_decode.json`` (the chosen method, draft and k). With ``--serve N`` the
chosen candidate is then deployed with Ray Serve (``--serve-app``, reading that
spec_decode.json) beside the target alone and timed single stream over HTTP on N held-out law
questions (``soaes bench serve --single-only``): its ``speedup_serve_batch1``. With
``--general N`` every candidate's acceptance at the chosen k is also measured on N held-out
general English prompts (``general_acceptance``), apart from the domain figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soaes bench spec", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pipelines/distill_demo.yaml", help="distill pipeline YAML")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides of the config")
    p.add_argument("--steps", type=int, default=None, help="cap distillation steps (if it runs)")
    p.add_argument("--k", default=None, help="comma-separated k values, e.g. 1,2,3")
    p.add_argument("--reps", type=int, default=None, help="repetitions per setting (>= 3)")
    p.add_argument("--num-prompts", type=int, default=None, help="held-out prompts")
    p.add_argument("--max-tokens", type=int, default=None, help="decode steps per prompt")
    p.add_argument("--out", default=None, help="where spec.json goes")
    p.add_argument("--no-undistilled", action="store_true", help="skip draft_init/")
    p.add_argument("--no-eagle3", action="store_true", help="skip eagle3/")
    p.add_argument(
        "--serve", type=int, default=0, help="time the chosen one through Serve on N prompts"
    )
    p.add_argument("--serve-app", default="serve_apps/demo_spec.yaml", help="Serve config")
    p.add_argument(
        "--general",
        type=int,
        default=0,
        help="also acceptance at the chosen k on N general prompts",
    )
    return p.parse_args(argv)


def _acceptance_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.k:
        out.append(f"acceptance.num_speculative_tokens=[{args.k}]")
    if args.num_prompts:
        out.append(f"acceptance.prompts.num_prompts={args.num_prompts}")
    if args.max_tokens:
        out.append(f"acceptance.max_tokens={args.max_tokens}")
    if args.reps:
        out.append(f"acceptance.repetitions={args.reps}")
    return out


def _ensure_distilled(cfg: Any, steps: int | None) -> None:
    """Run the distillation (without its own acceptance stage) unless hf/ exists."""
    from soaes.train.distill import run_distill

    if (Path(cfg.output_dir) / "hf" / "SOAES_EXPORT.json").is_file():
        return
    update: dict[str, Any] = {"acceptance": None}
    if steps:
        update["max_steps"] = steps
    run_distill(cfg.model_copy(update=update))


def serve_single_stream(
    app: str, target: str, spec_dir: Path, prompts: int, max_tokens: int
) -> dict[str, Any]:
    """``soaes bench serve --single-only`` on ``app`` with ``spec_dir``'s spec_decode.json:
    the served candidate and the target alone, single stream over HTTP and in-process."""
    from soaes.bench.serve import main as bench_serve

    out = spec_dir / "serve_single.json"
    argv = [
        "--app",
        app,
        f"applications.0.args.target={target}",
        f"applications.0.args.speculation.distill_dir={spec_dir}",
        "applications.0.args.deployment.autoscaling.max_replicas=1",
        "--single-only",
        "--single-prompts",
        str(prompts),
        "--max-tokens",
        str(max_tokens),
        "--out",
        str(out),
    ]
    bench_serve(argv)
    return json.loads(out.read_text(encoding="utf-8"))["single_stream"]


def general_acceptance(
    target: str, cands: dict[str, tuple[str, str]], acc: Any, k: int, n: int
) -> dict[str, Any]:
    """Each candidate's acceptance at k on ``n`` held-out general English prompts."""
    from soaes.eval.spec_choice import other_prompts_acceptance, token_prompts

    general = acc.model_copy(
        update={
            "prompts": acc.prompts.model_copy(update={"source": "general_en", "num_prompts": n})
        }
    )
    prompts = token_prompts(target, general)
    return {
        "prompts": general.prompts.model_dump(),
        "by_candidate": other_prompts_acceptance(target, cands, general, k, prompts),
    }


def with_serve(result: dict[str, Any], single: dict[str, Any]) -> None:
    """Record the Serve single-stream speed-up on the chosen candidate's row (and ``chosen``)."""
    chosen = result["chosen"]
    ratio = single["speedup_spec_vs_plain_http"]
    for r in result["candidates"]:
        if (r["name"], r["k"]) == (chosen["name"], chosen["k"]):
            r["speedup_serve_batch1"] = ratio
    chosen["speedup_serve_batch1"] = ratio
    result["serve_single_stream"] = single


def _fmt(s: dict | None, digits: int = 2) -> str:
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def report(result: dict[str, Any]) -> list[str]:
    """Printed table: one line per candidate, k and batch size."""
    lines = [
        f"target {result['target']}",
        f"{'candidate':<12} {'k':>2} {'b':>2} {'accept':>6} {'E':>5} {'c':>17} {'v_k':>17} "
        f"{'bound':>5} {'speed-up':>17} {'share':>5} {'identical':>9}",
    ]
    for r in result["candidates"]:
        for key in (k for k in r if k.startswith("batch")):
            m = r[key]
            share = f"{m['share_of_bound']:.2f}" if m["share_of_bound"] else "-"
            bound = f"{m['bound']:.2f}" if m["bound"] else "-"
            lines.append(
                f"{r['name']:<12} {r['k']:>2} {key[5:]:>2} {m['acceptance_rate']:>6.3f} "
                f"{m['mean_acceptance_length']:>5.2f} {_fmt(m['c_step']):>17} "
                f"{_fmt(m['v_k']):>17} {bound:>5} {_fmt(m['speedup']):>17} {share:>5} "
                f"{str(r['identical_outputs']):>9}"
            )
    lines.append(f"chosen: {result['chosen']}")
    for name, g in (result.get("general_acceptance") or {}).get("by_candidate", {}).items():
        lines.append(
            f"general prompts ({g['prompts']}), {name} k={g['k']}: acceptance "
            f"{g['acceptance_rate']:.3f}, E {g['mean_acceptance_length']:.2f}"
        )
    single = result.get("serve_single_stream")
    if single:
        lines.append(
            f"through Serve, single stream ({single['prompts']} prompts): "
            f"{single['speedup_spec_vs_plain_http']:.2f}x over the target alone "
            f"(in-process {single['speedup_spec_vs_plain_inproc']:.2f}x), "
            f"identical outputs: {single['identical_outputs_all_four']}"
        )
    return lines


def main(argv: list[str]) -> int:
    """Entry of ``soaes bench spec``; prints the table, writes spec.json, returns 0."""
    from soaes.config.loader import load_config
    from soaes.eval.spec_choice import candidates_of, measure_run, write_json
    from soaes.models.presets import resolve

    args = _parse(argv)
    cfg = load_config(args.config, list(args.overrides) + _acceptance_overrides(args))
    if cfg.kind != "distill" or cfg.acceptance is None:
        raise SystemExit(f"{args.config}: need a 'distill' pipeline with an acceptance block")
    t0 = time.time()
    _ensure_distilled(cfg, args.steps)
    run_dir = Path(cfg.output_dir).resolve()
    out_dir = run_dir / "bench_spec"
    target = str(Path(resolve(cfg.target.path)).resolve())
    cands = candidates_of(run_dir, not args.no_undistilled, not args.no_eagle3)
    result = measure_run(target, cands, cfg.acceptance, out_dir)
    if args.general and result["chosen"]:
        result["general_acceptance"] = general_acceptance(
            target, cands, cfg.acceptance, result["chosen"]["k"], args.general
        )
    if args.serve and result["chosen"]:
        single = serve_single_stream(
            args.serve_app, target, out_dir, args.serve, cfg.acceptance.max_tokens
        )
        with_serve(result, single)
    result.update(
        command="soaes bench spec " + " ".join(argv),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        num_prompts=cfg.acceptance.prompts.num_prompts,
        prompts=cfg.acceptance.prompts.model_dump(),
        decode_steps=cfg.acceptance.max_tokens,
        wall_s=round(time.time() - t0),
    )
    out = Path(args.out) if args.out else out_dir / "spec.json"
    write_json(out, result)
    lines = report(result) + [f"wall time {result['wall_s']} s; results in {out}"]
    print("\n".join(lines))
    (out_dir / "report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


def load(path: str | Path) -> dict[str, Any]:
    """Read a spec.json written by this command."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
