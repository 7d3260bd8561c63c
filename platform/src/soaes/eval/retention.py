"""General-capability retention: MMLU by option log-likelihood, held-out perplexity, ratios.

MMLU (asset ``mmlu``): 14,044 rows, 2 of them a stray header (``correct_answer ==
"answer"``) that is dropped. A fixed subset takes ``n`` questions per subject with a seeded
RNG per subject, so adding subjects or changing ``n`` for one never reshuffles the others.
Each question is scored by the log-likelihood of its four options (no generation): the
option with the highest log p(option | prompt) is the model's answer.

Perplexity is measured on held-out general (and domain) text: the last documents of a
built-in source, or the CPT data pipeline's packed validation blocks.

Retention = after / before, with a clustered paired bootstrap interval (soaes.eval.stats).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from soaes.eval.loglik import continuation_logprobs, sequence_nll

log = logging.getLogger(__name__)

LETTERS = ("A", "B", "C", "D")


def load_mmlu(path: str | Path | None = None) -> list[dict]:
    """Load MMLU rows as ``{id, question, choices[4], answer (0-3), topic}``.

    Rows whose ``correct_answer`` is not A-D (the 2 stray header rows) are dropped and
    counted in the log. ``id`` is the row's line number, a stable key across runs.
    """
    if path is None:
        from soaes.assets.fetch import require

        path = require("mmlu") / "mmlu.jsonl"
    rows, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            r = json.loads(line)
            if r.get("correct_answer") not in LETTERS:
                dropped += 1
                continue
            rows.append(
                {
                    "id": i,
                    "question": r["question"],
                    "topic": r["topic"],
                    "choices": [str(r[f"answer_{x.lower()}"]) for x in LETTERS],
                    "answer": LETTERS.index(r["correct_answer"]),
                }
            )
    log.info("mmlu: %d rows, %d dropped (correct_answer not A-D)", len(rows), dropped)
    return rows


def stratified_subset(rows: Sequence[dict], n_per_subject: int, seed: int = 0) -> list[dict]:
    """``n_per_subject`` rows of every topic (all of a smaller one), seeded, sorted by id."""
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_topic[r["topic"]].append(r)
    out = []
    for topic in sorted(by_topic):
        pool = sorted(by_topic[topic], key=lambda r: r["id"])
        rng = random.Random(f"{seed}:{topic}")
        out.extend(rng.sample(pool, min(n_per_subject, len(pool))))
    return sorted(out, key=lambda r: r["id"])


def mmlu_pairs(item: dict, scoring: str = "option") -> list[tuple[str, str]]:
    """The four (context, continuation) pairs whose log-likelihoods decide an item.

    ``option``: the question, then `` <option text>`` (options not listed; lm-eval's
    continuation style, informative for small models). ``letter``: the question with its
    options listed as A-D, then `` A`` … `` D`` (the classic MMLU prompt).
    """
    head = f"The following is a multiple choice question about {item['topic']}.\n\n{item['question']}\n"
    if scoring == "option":
        return [(head + "Answer:", " " + c) for c in item["choices"]]
    if scoring == "letter":
        listed = "".join(f"{x}. {c}\n" for x, c in zip(LETTERS, item["choices"], strict=True))
        return [(head + listed + "Answer:", " " + x) for x in LETTERS]
    raise ValueError(f"scoring {scoring!r}: expected 'option' or 'letter'")


def score_mmlu(
    model,
    tokenizer,
    items: Sequence[dict],
    scoring: str = "option",
    batch_size: int = 4,
    max_len: int = 1024,
) -> list[dict]:
    """Per item: the four option log-likelihoods, the predicted index and correctness.

    Returns:
        ``[{id, topic, answer, pred, correct (0/1), logprobs[4], p_correct}]`` where
        ``p_correct`` is the softmax over the four options' log-likelihoods at the answer.
    """
    import math

    pairs = [p for it in items for p in mmlu_pairs(it, scoring)]
    lps = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, max_len=max_len)
    out = []
    for k, it in enumerate(items):
        lp = lps[4 * k : 4 * k + 4]
        pred = max(range(4), key=lambda j: lp[j])
        top = max(lp)
        z = sum(math.exp(x - top) for x in lp)
        out.append(
            {
                "id": it["id"],
                "topic": it["topic"],
                "answer": it["answer"],
                "pred": pred,
                "correct": int(pred == it["answer"]),
                "logprobs": lp,
                "p_correct": math.exp(lp[it["answer"]] - top) / z,
            }
        )
    return out


def mmlu_summary(per_item: Sequence[dict]) -> dict:
    """Accuracy and mean correct-option probability of scored MMLU items."""
    n = len(per_item)
    return {
        "n": n,
        "accuracy": sum(r["correct"] for r in per_item) / n if n else 0.0,
        "p_correct": sum(r["p_correct"] for r in per_item) / n if n else 0.0,
    }


def heldout_texts(source: str, max_docs: int) -> list[str]:
    """The last ``max_docs`` documents of a built-in text source (a fixed held-out slice).

    The shipped CPT pipelines cap each source with ``max_docs`` from its start, so the tail
    is never trained on; with a CPT validation split, prefer ``validation_blocks``.
    """
    from collections import deque

    from soaes.assets.texts import iter_source_texts

    return list(deque(iter_source_texts(source), maxlen=max_docs))


def validation_blocks(
    folder: str | Path, max_docs: int, ids_column: str = "input_ids"
) -> list[list[int]]:
    """The first ``max_docs`` packed blocks of ``folder/*.parquet`` (sorted file order).

    The data_cpt pipeline's format: ``input_ids`` blocks, documents separated by EOS, and an
    ``n_pad`` column counting a row's trailing pad tokens, which are cut off here. A block is
    scored as one causal sequence (attention crosses its document boundaries, as in
    training without attention resets).
    """
    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"validation_dir {folder}: no *.parquet files")
    blocks: list[list[int]] = []
    for f in files:
        names = pq.read_schema(f).names
        if ids_column not in names:
            raise ValueError(f"validation_dir {folder}: {f.name} has no column {ids_column!r}")
        cols = [ids_column] + (["n_pad"] if "n_pad" in names else [])
        table = pq.read_table(f, columns=cols).slice(0, max_docs - len(blocks))
        pads = table.column("n_pad").to_pylist() if "n_pad" in cols else [0] * table.num_rows
        for ids, pad in zip(table.column(ids_column).to_pylist(), pads, strict=True):
            blocks.append(ids[: len(ids) - (pad or 0)])
        if len(blocks) >= max_docs:
            break
    return blocks


def perplexity_items(
    model,
    tokenizer,
    texts: Sequence[str] | None = None,
    blocks: Sequence[Sequence[int]] | None = None,
    max_len: int = 512,
    batch_size: int = 4,
) -> list[dict]:
    """Per document: NLL sum and scored tokens (texts are tokenised and cut to max_len)."""
    seqs = (
        [list(b)[:max_len] for b in blocks]
        if blocks is not None
        else [tokenizer(t, add_special_tokens=True)["input_ids"][:max_len] for t in texts or []]
    )
    seqs = [s for s in seqs if len(s) >= 2]
    nll = sequence_nll(model, seqs, tokenizer.pad_token_id, batch_size=batch_size)
    return [{"nll": a, "tokens": b} for a, b in nll]


def ppl_summary(items: Sequence[dict]) -> dict:
    """Token-weighted perplexity exp(sum NLL / sum tokens) of scored documents."""
    import math

    tokens = sum(i["tokens"] for i in items)
    nll = sum(i["nll"] for i in items)
    return {
        "ppl": math.exp(nll / tokens) if tokens else float("nan"),
        "n_docs": len(items),
        "n_tokens": tokens,
    }
