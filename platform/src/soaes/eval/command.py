"""``soaes eval --qa FILE.jsonl --model PATH``: score any checkpoint on any Q&A file."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from soaes.config.inference import EngineConfig
from soaes.eval.metrics import METRIC_NAMES


def add_eval_command(sub) -> None:
    """Add the ``eval`` subparser to the ``soaes`` command's subparsers."""
    p = sub.add_parser(
        "eval",
        help="score a model on a Q&A jsonl (question/answer lines) with ROUGE/BLEU",
        description="Greedy vLLM answers to every question, scored against the answers with "
        "ROUGE-1/2/L and BLEU-4 in both conventions (jieba, sacrebleu). Malformed lines are "
        "reported and skipped.",
    )
    p.add_argument("--qa", required=True, help="jsonl file: one {question, answer, …} a line")
    p.add_argument("--model", required=True, help="model folder or preset handle (tiny/target)")
    p.add_argument("--tokenizer", default=None, help="tokenizer when not in the model folder")
    p.add_argument(
        "--out", default=None, help="output folder (default runs/eval_cli/<qa>__<model>)"
    )
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per answer")
    p.add_argument("--max-model-len", type=int, default=2048, help="vLLM context length")
    p.add_argument("--limit", type=int, default=None, help="score only the first N valid items")
    p.add_argument("--system-prompt", default=None, help="optional system message")
    p.set_defaults(func=cmd_eval)


def default_out(qa: str, model: str) -> Path:
    """``runs/eval_cli/<qa stem>__<model name>`` with unsafe characters replaced."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(qa).stem}__{Path(model.rstrip('/')).name}")
    return Path("runs") / "eval_cli" / name


def format_scores(summary: dict) -> str:
    """A small text table: one row per convention, one column per metric."""
    lines = [f"{'convention':<11}" + "".join(f"{m:>9}" for m in METRIC_NAMES)]
    for conv in ("jieba", "sacrebleu"):
        if conv in summary:
            lines.append(f"{conv:<11}" + "".join(f"{summary[conv][m]:>9.2f}" for m in METRIC_NAMES))
    if "article_id" in summary:  # an article_id set: share naming the right law and article
        lines.append(f"{'article_id':<11}{summary['article_id']['correct']:>9.3f} (share correct)")
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the ``eval`` subcommand; exit code 2 when the file is missing or has no valid item."""
    from soaes.eval.qa import evaluate_qa, load_qa

    if args.max_new_tokens < 1 or (args.limit is not None and args.limit < 1):
        print("error: --max-new-tokens and --limit must be >= 1", file=sys.stderr)
        return 2
    if not Path(args.qa).is_file():
        print(f"error: --qa {args.qa}: file not found", file=sys.stderr)
        return 2
    items, bad = load_qa(args.qa, limit=args.limit)
    for b in bad:
        print(f"{args.qa}:{b['line']}: skipped: {b['reason']}", file=sys.stderr)
    if not items:
        print(f"error: {args.qa}: no valid question/answer lines", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out(args.qa, args.model)
    summary = evaluate_qa(
        args.model,
        items,
        out_dir=out,
        malformed=bad,
        source=args.qa,
        tokenizer=args.tokenizer,
        max_new_tokens=args.max_new_tokens,
        engine=EngineConfig(max_model_len=args.max_model_len),
        system_prompt=args.system_prompt,
    )
    print(
        f"{summary['n_items']} items scored, {summary['n_malformed']} malformed lines "
        f"skipped; {summary['tokens_per_s']} tokens/s"
    )
    print(format_scores(summary))
    print(f"per-item: {out / 'predictions.jsonl'}\naggregate: {out / 'scores.json'}")
    return 0
