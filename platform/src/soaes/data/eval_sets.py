"""Domain eval sets of ``data_sft``: sized, one population each, no answer in its question.

Written to ``<output_dir>/eval_sets/<set>.jsonl``, one item a line::

    {"id", "set", "question", "answer", "cluster", "law", "article_no", "scoring",
     "phrasing", "seen_in_training", "lang"}

- ``law_recall``: ``请写出《X》第N条的原文。``-style questions (held-out phrasings only) ->
  the article text, for laws whose text is in the CPT corpus (``eval_sets.recall_laws``);
  scoring ``overlap``, ``seen_in_training: cpt_text`` (knowledge recall).
- ``law_withheld``: the same task for ``withheld_laws`` (in neither CPT nor SFT);
  ``seen_in_training: none``.
- ``scenario_article``: a keyword description (``law_questions.scenario_points``) ->
  ``《X》第N条``; scoring ``article_id`` (exact law and article number); the question
  contains neither the law's name nor the article number.
- ``insurance_zh``: insuranceqa (zh) question -> its reference answer; scoring ``overlap``.

Each set takes at most one item per source document (``cluster``: ``law_article:<id>``
or ``insuranceqa:answer:<id>``), documents in seeded order, up to ``eval_sets.size``.
Articles whose text occurs more than once in laws.db, or shorter than
``MIN_ARTICLE_CHARS``, are never used. The documents of law_recall, scenario_article and
insurance_zh are reserved before the split (all their SFT examples go to test); an item
whose question or answer still equals a turn of a train example is dropped and counted.
``manifest.json`` gives per set n items, n clusters and the share of answer characters
found in the question (``answer_chars_in_question``, a tokenizer-free leak measure).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from soaes.assets.texts import law_articles
from soaes.config.data import DataSFTConfig
from soaes.data import law_questions as lq
from soaes.data.clean import normalize_text
from soaes.data.dedup import stable_hash64
from soaes.data.dialogs import insuranceqa
from soaes.data.manifest import write_json, write_jsonl
from soaes.data.sft_rows import leak_key
from soaes.data.shards import sha256_file

MIN_ARTICLE_CHARS = 20
SCORING = {
    "law_recall": "overlap",
    "law_withheld": "overlap",
    "scenario_article": "article_id",
    "insurance_zh": "overlap",
}
SEEN = {
    "law_recall": "cpt_text",
    "law_withheld": "none",
    "scenario_article": "cpt_text",
    "insurance_zh": "none",
}


def seeded(keys: list[str], seed: int, salt: str) -> list[int]:
    """Indices of ``keys`` in a seeded order that does not depend on the input order."""
    return sorted(
        range(len(keys)), key=lambda i: (stable_hash64(f"{seed}\x00{salt}\x00{keys[i]}"), keys[i])
    )


def eligible_articles(rows: list[tuple], all_texts: Counter) -> list[tuple]:
    """Articles usable as eval documents: a law name and number, and a text that is long
    enough and occurs once in laws.db (so it is told apart and seen nowhere else)."""
    out = []
    for aid, law, no, text in rows:
        text = normalize_text(text or "")
        if law and no and len(text) >= MIN_ARTICLE_CHARS and all_texts[text] == 1:
            out.append((aid, law, no, text))
    return out


def _item(
    set_name: str,
    key: str,
    question: str,
    answer: str,
    cluster: str,
    phrasing: str,
    law: str | None = None,
    no: str | None = None,
) -> dict:
    return {
        "id": f"{set_name}:{key}",
        "set": set_name,
        "question": question,
        "answer": answer,
        "cluster": cluster,
        "law": law,
        "article_no": no,
        "scoring": SCORING[set_name],
        "phrasing": phrasing,
        "seen_in_training": SEEN[set_name],
        "lang": "zh",
    }


def article_text_items(set_name: str, articles: list[tuple], n: int, seed: int) -> list[dict]:
    """Up to ``n`` article-text items, one per article, in held-out phrasings."""
    out = []
    for i in seeded([str(a[0]) for a in articles], seed, "law")[:n]:
        aid, law, no, text = articles[i]
        name = lq.pick(lq.HELD_OUT_ARTICLE, str(aid), seed)
        out.append(
            _item(
                set_name,
                str(aid),
                lq.article_question(name, law, no),
                text,
                f"law_article:{aid}",
                name,
                law,
                no,
            )
        )
    return out


def scenario_items(articles: list[tuple], n: int, seed: int) -> list[dict]:
    """Up to ``n`` scenario items (articles with at least ``MIN_POINTS`` keywords)."""
    out = []
    for i in seeded([str(a[0]) for a in articles], seed, "law"):
        aid, law, no, text = articles[i]
        points = lq.scenario_points(text, law)
        if len(points) < lq.MIN_POINTS:
            continue
        name = lq.pick(lq.HELD_OUT_SCENARIO, str(aid), seed)
        out.append(
            _item(
                "scenario_article",
                str(aid),
                lq.scenario_question(name, points),
                lq.article_id(law, no),
                f"law_article:{aid}",
                name,
                law,
                no,
            )
        )
        if len(out) == n:
            break
    return out


def insurance_items(n: int, seed: int) -> list[dict]:
    """Up to ``n`` insuranceqa (zh) items: answers in seeded order, one question each."""
    by_answer: dict[str, list] = {}
    for ex in insuranceqa("zh"):
        if not ex.reason:
            by_answer.setdefault(ex.group_key, []).append(ex)
    clusters = sorted(by_answer)
    out = []
    for i in seeded(clusters, seed, "insurance")[:n]:
        exs = by_answer[clusters[i]]
        ex = exs[seeded([e.example_id for e in exs], seed, "question")[0]]
        out.append(
            _item(
                "insurance_zh",
                ex.example_id.split(":", 1)[1],
                ex.messages[0]["content"],
                ex.messages[1]["content"],
                ex.group_key,
                "original",
            )
        )
    return out


def select_eval_sets(cfg: DataSFTConfig) -> dict[str, list[dict]]:
    """Candidate items per configured set: ``size`` plus a margin for the train-overlap drop."""
    es, n = cfg.eval_sets, cfg.eval_sets.size + cfg.eval_sets.size // 10 + 5
    out: dict[str, list[dict]] = {}
    if {"law_recall", "law_withheld", "scenario_article"} & set(es.sets):
        every = law_articles()
        counts = Counter(normalize_text(r[3] or "") for r in every)
        recall = eligible_articles(law_articles(es.recall_laws, cfg.withheld_laws), counts)
        withheld = eligible_articles(
            law_articles(cfg.withheld_laws) if cfg.withheld_laws else [], counts
        )
    for name in es.sets:
        if name == "law_recall":
            out[name] = article_text_items(name, recall, n, es.seed)
        elif name == "law_withheld":
            out[name] = article_text_items(name, withheld, n, es.seed)
        elif name == "scenario_article":
            out[name] = scenario_items(recall, n, es.seed)
        else:
            out[name] = insurance_items(n, es.seed)
    return out


def group_key(cluster: str) -> str:
    """The SFT group key of an eval cluster (``law_article:7`` -> ``laws:7``)."""
    return "laws:" + cluster.split(":", 1)[1] if cluster.startswith("law_article:") else cluster


def reserved_groups(sets: dict[str, list[dict]]) -> np.ndarray:
    """Group hashes of the documents of every set (withheld articles are in no SFT source)."""
    keys = {group_key(it["cluster"]) for items in sets.values() for it in items}
    return np.array(sorted(stable_hash64(k) for k in keys), dtype=np.int64)


def echo_overlap(items: list[dict]) -> dict:
    """Mean and max share of answer characters found in the question (see ``law_questions``)."""
    shares = [lq.answer_chars_in_question(it["question"], it["answer"]) for it in items]
    return {
        "mean": round(float(np.mean(shares)), 4) if shares else None,
        "max": round(float(np.max(shares)), 4) if shares else None,
    }


def write_eval_sets(
    out: Path, sets: dict[str, list[dict]], train_keys: np.ndarray, cfg: DataSFTConfig
) -> dict:
    """Drop items that meet a train turn, cut each set to ``size``, write jsonl + manifest."""
    summary = {}
    for name, items in sets.items():
        leaked = [
            np.isin([leak_key(it["question"]), leak_key(it["answer"])], train_keys).any()
            for it in items
        ]
        kept = [it for it, bad in zip(items, leaked, strict=True) if not bad][: cfg.eval_sets.size]
        path = out / f"{name}.jsonl"
        write_jsonl(path, kept)
        summary[name] = {
            "path": f"{name}.jsonl",
            "n_items": len(kept),
            "n_clusters": len({it["cluster"] for it in kept}),
            "scoring": SCORING[name],
            "seen_in_training": SEEN[name],
            "lang": "zh",
            "candidates": len(items),
            "dropped_train_overlap": int(sum(leaked)),
            "phrasings": dict(Counter(it["phrasing"] for it in kept)),
            "answer_chars_in_question": echo_overlap(kept),
            "sha256": sha256_file(path),
        }
    manifest = {
        "size": cfg.eval_sets.size,
        "seed": cfg.eval_sets.seed,
        "withheld_laws": list(cfg.withheld_laws),
        "recall_laws": cfg.eval_sets.recall_laws,
        "held_out_phrasings": {"article": lq.HELD_OUT_ARTICLE, "scenario": lq.HELD_OUT_SCENARIO},
        "train_phrasings": {"article": lq.TRAIN_ARTICLE, "scenario": lq.TRAIN_SCENARIO},
        "sets": summary,
    }
    write_json(out / "manifest.json", manifest)
    return summary
