"""Domain task eval: greedy vLLM answers to held-out questions, scored in both conventions.

Input: a jsonl file, one object a line with string ``question`` and ``answer`` (extra fields
are kept in the per-item output). Malformed lines (bad UTF-8, bad JSON, not an object,
missing or empty fields) are reported with their line number and reason and skipped; the
rest are scored. The SFT data pipeline writes such files as ``<sft dir>/<stage>/test/qa.jsonl``
and the eval sets as ``<sft dir>/eval_sets/<set>.jsonl``, whose lines also carry ``id``,
``cluster`` (the source document: the bootstrap resamples clusters), ``scoring``
(``overlap``: ROUGE/BLEU against the answer; ``article_id``: the prediction must name
``law`` and ``article_no``) and ``seen_in_training``. Missing, they default to the line
number, the item itself, ``overlap`` and unknown.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

from soaes.config.inference import EngineConfig
from soaes.eval.diagnostics import article_id_score
from soaes.eval.metrics import CONVENTIONS, score_corpus, score_pair

log = logging.getLogger(__name__)

SCORINGS = ("overlap", "article_id")


def parse_qa_line(raw: bytes) -> tuple[dict | None, str | None]:
    """Parse one jsonl line into an item, or return the reason it is malformed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} (column {e.colno})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    scoring = obj.get("scoring", "overlap")
    if scoring not in SCORINGS:
        return None, f"field 'scoring' must be one of {SCORINGS}, got {scoring!r}"
    needed = ("question", "answer") + (("law", "article_no") if scoring == "article_id" else ())
    for field in needed:
        if field not in obj:
            return None, f"missing field {field!r}"
        if not isinstance(obj[field], str) or not obj[field].strip():
            return None, f"field {field!r} must be a non-empty string"
    return obj, None


def normalize_item(obj: dict, line: int) -> dict:
    """An item with ``id``, ``cluster``, ``scoring`` and ``line`` always present (as strings)."""
    item_id = str(obj.get("id", line))
    return {
        **obj,
        "id": item_id,
        "cluster": str(obj.get("cluster", item_id)),
        "scoring": obj.get("scoring", "overlap"),
        "line": line,
    }


def load_qa(path: str | Path, limit: int | None = None) -> tuple[list[dict], list[dict]]:
    """Read a Q&A jsonl file.

    Args:
        path: the file.
        limit: keep only the first ``limit`` valid items.

    Returns:
        ``(items, malformed)``: items carry their 1-based ``line``; malformed entries are
        ``{"line", "reason"}``. Blank lines are neither.
    """
    items, bad = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            obj, reason = parse_qa_line(raw.rstrip(b"\r\n"))
            if reason:
                bad.append({"line": n, "reason": reason})
            elif limit is None or len(items) < limit:
                items.append(normalize_item(obj, n))
    return items, bad


def laws_qa_sample(n: int, seed: int = 0) -> list[dict]:
    """``n`` items "《X》第N条规定了什么？" → the article text, from in-force laws, seeded."""
    from soaes.assets.texts import law_articles

    rows = [r for r in law_articles() if r[2] is not None and r[3]]
    picked = sorted(random.Random(seed).sample(rows, min(n, len(rows))))
    return [
        {
            "question": f"《{law}》{no}规定了什么？",
            "answer": text.strip(),
            "source_id": f"laws:{aid}",
            "id": f"laws:{aid}",
            "cluster": law,  # articles of one law are not independent items
            "scoring": "overlap",
            "line": i + 1,
        }
        for i, (aid, law, no, text) in enumerate(picked)
    ]


def render_prompts(
    tokenizer, questions: Sequence[str], system_prompt: str | None = None
) -> list[str]:
    """Prompts in the tokenizer's chat template (generation prompt added).

    A checkpoint without a chat template (a raw CPT model) gets ``Question: …\\nAnswer:``.
    """
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer has no chat template: using a plain Question/Answer prompt")
        return [f"Question: {q}\nAnswer:" for q in questions]
    out = []
    for q in questions:
        msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": q}
        ]
        out.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return out


def generate_answers(
    model: str,
    questions: Sequence[str],
    max_new_tokens: int = 128,
    tokenizer: str | None = None,
    system_prompt: str | None = None,
    engine: EngineConfig | None = None,
) -> list[dict]:
    """Greedy answers from vLLM, one per question, in order.

    The engine is built here (never at import: vLLM's multiprocessing bootstrap fails then)
    and shut down before returning (default engine: max_model_len 2048). Prompts longer than
    ``engine.max_model_len - max_new_tokens`` keep their last tokens.

    Returns:
        ``[{"prediction", "finish_reason", "prompt_tokens", "output_tokens"}]``.
    """
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from soaes.inference.engine import close_llm, engine_llm
    from soaes.models.presets import resolve

    folder, tok_dir = resolve(model), resolve(tokenizer) if tokenizer else None
    tok = AutoTokenizer.from_pretrained(tok_dir or folder)
    engine = engine or EngineConfig(max_model_len=2048)
    budget = engine.max_model_len - max_new_tokens
    prompts = [
        tok(p, add_special_tokens=False)["input_ids"][-budget:]
        for p in render_prompts(tok, questions, system_prompt)
    ]
    llm = engine_llm(folder, engine, tokenizer=tok_dir)
    try:
        outs = llm.generate(
            [{"prompt_token_ids": p} for p in prompts],
            SamplingParams(temperature=0.0, max_tokens=max_new_tokens),
            use_tqdm=False,
        )
    finally:
        close_llm(llm)
    return [
        {
            "prediction": o.outputs[0].text.strip(),
            "finish_reason": o.outputs[0].finish_reason,
            "prompt_tokens": len(p),
            "output_tokens": len(o.outputs[0].token_ids),
        }
        for o, p in zip(outs, prompts, strict=True)
    ]


def score_item(item: dict, prediction: str) -> dict[str, dict[str, float]]:
    """``{convention: {metric: value}}`` of one answer: both overlap conventions, or
    ``{"article_id": {"correct": 0|1}}`` for an ``article_id`` item."""
    if item.get("scoring", "overlap") == "article_id":
        return {
            "article_id": {"correct": article_id_score(prediction, item["law"], item["article_no"])}
        }
    return {c: score_pair(prediction, item["answer"], c) for c in CONVENTIONS}


def score_items(items: Sequence[dict], generations: Sequence[dict]) -> tuple[list[dict], dict]:
    """Per-item records (input fields + generation + scores) and aggregates per convention.

    Overlap sets aggregate in both conventions (sacrebleu's BLEU over the corpus); an
    ``article_id`` set as its share correct. A set mixes no scorings.
    """
    kinds = {it.get("scoring", "overlap") for it in items}
    if len(kinds) > 1:
        raise ValueError(f"a Q&A set mixes scorings {sorted(kinds)}: split it into sets")
    per_item = [
        {**it, **gen, "scores": score_item(it, gen["prediction"])}
        for it, gen in zip(items, generations, strict=True)
    ]
    if kinds == {"article_id"}:
        n = max(len(per_item), 1)
        return per_item, {
            "article_id": {
                "correct": sum(r["scores"]["article_id"]["correct"] for r in per_item) / n
            }
        }
    hyps = [g["prediction"] for g in generations]
    refs = [it["answer"] for it in items]
    return per_item, {c: score_corpus(hyps, refs, c) for c in CONVENTIONS}


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    """Write rows as UTF-8 jsonl, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def write_json(path: Path, obj: dict) -> None:
    """Write a JSON document, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


def evaluate_qa(
    model: str,
    items: Sequence[dict],
    out_dir: str | Path | None = None,
    malformed: Sequence[dict] = (),
    source: str = "",
    **gen_kwargs,
) -> dict:
    """Generate, score and (when ``out_dir`` is given) write one model's Q&A results.

    Writes ``predictions.jsonl`` (per item), ``malformed.jsonl`` and ``scores.json``
    (aggregates, the summary returned).
    """
    if not items:
        raise ValueError(f"{source or 'Q&A set'}: no valid items to score")
    t0 = time.perf_counter()
    gens = generate_answers(model, [it["question"] for it in items], **gen_kwargs)
    gen_s = time.perf_counter() - t0
    per_item, agg = score_items(items, gens)
    out_tokens = sum(g["output_tokens"] for g in gens)
    summary = {
        "model": model,
        "qa_file": str(source),
        "n_items": len(items),
        "n_malformed": len(malformed),
        **agg,
        "generation_s": round(gen_s, 2),
        "output_tokens": out_tokens,
        "tokens_per_s": round(out_tokens / gen_s, 2),
    }
    if out_dir is not None:
        out = Path(out_dir)
        write_jsonl(out / "predictions.jsonl", per_item)
        write_jsonl(out / "malformed.jsonl", malformed)
        write_json(out / "scores.json", summary)
    return summary
