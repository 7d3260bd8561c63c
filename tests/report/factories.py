"""Small factories for the report tests: raw per-model results as the eval runner returns them."""

from __future__ import annotations

import json
from pathlib import Path

from soaes.config.loader import validate_config
from soaes.eval.diagnostics import generation_diagnostics
from soaes.eval.qa import normalize_item, score_items

QUESTIONS = [f"What does article {i} of the insurance law provide?" for i in range(12)]
ANSWERS = [
    f"Article {i} provides that the insurer pays claim number {i} within thirty days."
    for i in range(12)
]


def qa_set(seen: bool | None = None) -> dict:
    """12 items from 4 source documents (3 items each)."""
    extra = {} if seen is None else {"seen_in_training": seen}
    items = [
        normalize_item({"question": q, "answer": a, "cluster": f"doc{i // 3}", **extra}, i + 1)
        for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True))
    ]
    return {"items": items, "malformed": [], "source": "qa.jsonl"}


def qa_raw(items: list[dict], predictions: list[str], finish: str = "stop", cap: int = 64) -> dict:
    """One model's set result, the shape of the runner's ``_score_set``."""
    gens = [
        {
            "prediction": p,
            "finish_reason": finish,
            "prompt_tokens": 5,
            "output_tokens": len(p.split()),
        }
        for p in predictions
    ]
    per_item, agg = score_items(items, gens)
    keep = ("id", "cluster", "prediction", "finish_reason", "output_tokens", "scores")
    return {
        "source": "qa.jsonl",
        "scoring": "overlap",
        "n_items": len(items),
        "n_malformed": 0,
        "scores": agg,
        "diagnostics": generation_diagnostics(per_item, cap),
        "per_item": [{k: r[k] for k in keep} for r in per_item],
    }


def mmlu_raw(correct: list[int], p: float = 0.3) -> dict:
    per_item = [{"id": i, "correct": c, "p_correct": p + 0.1 * c} for i, c in enumerate(correct)]
    return {
        "n": len(correct),
        "accuracy": sum(correct) / len(correct),
        "p_correct": sum(r["p_correct"] for r in per_item) / len(per_item),
        "scoring": "option",
        "per_item": per_item,
    }


def ppl_raw(nll: list[float]) -> dict:
    return {
        "general_zh": {
            "group": "general",
            "ppl": 2.0,
            "n_docs": len(nll),
            "n_tokens": 10 * len(nll),
            "per_item": [{"nll": x, "tokens": 10} for x in nll],
        }
    }


def model_raw(qa: dict | None = None, mmlu: dict | None = None, ppl: dict | None = None) -> dict:
    return {"path": "x", "seconds": 1.0, "qa": qa or {}, "mmlu": mmlu, "perplexity": ppl or {}}


def eval_config(tmp_path: Path, models: list[str], **report) -> object:
    return validate_config(
        {
            "kind": "eval",
            "name": "t",
            "output_dir": str(tmp_path / "eval"),
            "models": [{"name": n, "path": "tiny/target"} for n in models],
            "qa": [{"name": "laws", "path": "unused.jsonl"}],
            "retention": {"n_boot": 200},
            "roles": {
                "cpt_before": "base",
                "cpt_after": "cpt",
                "cpt_sft": "cpt_sft",
                "progressive": "cpt_sft",
                "single_stage": "single",
                "qa_set": "laws",
            },
            "report": report,
        }
    )


def write_sft_run(run: Path, stages: list[dict]) -> Path:
    """An SFT run folder: summary.json and each stage's data_seen.json."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "summary.json").write_text(
        json.dumps({"stages": [{"stage": s["name"]} for s in stages]})
    )
    for s in stages:
        (run / s["name"]).mkdir(exist_ok=True)
        record = {
            "steps": s["steps"],
            "peak_lr": s["lr"],
            "schedule": "cosine",
            "init_from": s["init"],
            "sources": {
                k: {"rows": n, "tokens": 50 * n, "examples_seen": n, "tokens_seen": 50 * n}
                for k, n in s["sources"].items()
            },
        }
        (run / s["name"] / "data_seen.json").write_text(json.dumps(record))
    return run
