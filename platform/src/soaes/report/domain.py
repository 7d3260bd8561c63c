"""Domain Q&A: each set on its own, beside the echo baseline and the untouched base.

``echo`` answers every question with the question itself and is scored the same way: an
arm that does not beat it has learnt nothing the overlap metric can see. Each arm is also
flagged when it scores below the model it was trained from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soaes.eval.diagnostics import echo_predictions, generation_diagnostics
from soaes.eval.qa import score_items
from soaes.report.measures import CORPUS_ONLY, Boot, is_seen, ratio
from soaes.report.schema import DomainRow, DomainSet, ModelResult, Ratio, Sample

ECHO = "echo"
MAIN_METRIC = {"overlap": ("jieba", "rouge-1"), "article_id": ("article_id", "correct")}
N_SAMPLES = 3


def echo_raw(qa_set: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """The echo pseudo-model's raw result on one set (same shape as a model's)."""
    items = qa_set["items"]
    per_item, agg = score_items(items, echo_predictions([it["question"] for it in items]))
    keep = ("id", "cluster", "prediction", "finish_reason", "output_tokens", "scores")
    return {
        "source": qa_set["source"],
        "scoring": items[0]["scoring"],
        "n_items": len(items),
        "n_malformed": len(qa_set["malformed"]),
        "scores": agg,
        "diagnostics": generation_diagnostics(per_item, max_new_tokens),
        "per_item": [{k: r[k] for k in keep} for r in per_item],
    }


def disclosure(items: Sequence[dict[str, Any]]) -> str:
    """Recall or withheld, from the items' ``seen_in_training``."""
    seen = [it["seen_in_training"] for it in items if "seen_in_training" in it]
    if len(seen) < len(items):
        return "not stated (legacy set: its answers may appear in training data)"
    k = sum(map(is_seen, seen))
    corpora = sorted({str(v) for v in seen if is_seen(v) and isinstance(v, str)})
    where = f" ({', '.join(corpora)})" if corpora else ""
    if k == len(items):
        return f"recall: every answer appears in a training corpus{where}"
    if k == 0:
        return "withheld: no answer appears in any training corpus"
    return f"mixed: {k} of {len(items)} answers appear in a training corpus{where}"


def main_score(m: ModelResult, set_name: str) -> float:
    """A model's main measure on a set (jieba ROUGE-1, or article-id accuracy)."""
    s = m.qa[set_name]
    conv, metric = MAIN_METRIC[s.scoring]
    return s.scores[conv][metric]


def arm_flags(
    score: float, echo: float | None, base: float | None, start: tuple[str, float] | None
) -> list[str]:
    """Why an arm's score is suspect: not above echo or base, or below its own start."""
    flags = []
    if echo is not None and score <= echo:
        flags.append("not above echo")
    if base is not None and score <= base:
        flags.append("not above base")
    if start is not None and score < start[1]:
        flags.append(f"below its start ({start[0]})")
    return flags


def domain_set(
    set_name: str,
    items: Sequence[dict[str, Any]],
    models: dict[str, ModelResult],
    base: str | None,
    starts: dict[str, str],
) -> DomainSet:
    """One set's table: every model that answered it, echo and base included, with flags."""
    have = {k: m for k, m in models.items() if set_name in m.qa}
    scores = {k: main_score(m, set_name) for k, m in have.items()}
    rows = []
    for k, m in have.items():
        role = "echo" if k == ECHO else "base" if k == base else "arm"
        start = starts.get(k)
        flags = (
            arm_flags(
                scores[k],
                scores.get(ECHO),
                scores.get(base) if base else None,
                (start, scores[start]) if start in scores else None,
            )
            if role == "arm"
            else []
        )
        diag = m.qa[set_name].diagnostics
        rows.append(DomainRow(model=k, role=role, score=scores[k], diagnostics=diag, flags=flags))
    first = next(iter(have.values())).qa[set_name]
    conv, metric = MAIN_METRIC[first.scoring]
    return DomainSet(
        name=set_name,
        disclosure=disclosure(items),
        main_metric=f"{conv} {metric}",
        n_items=first.n_items,
        n_clusters=first.n_clusters,
        rows=rows,
    )


def samples(qa_sets: dict[str, dict], raw: dict[str, dict], n: int = N_SAMPLES) -> list[Sample]:
    """The first ``n`` items of each set with every model's prediction."""
    out = []
    for set_name, s in qa_sets.items():
        preds = {
            k: {r["id"]: r["prediction"] for r in m["qa"][set_name]["per_item"]}
            for k, m in raw.items()
            if set_name in m["qa"]
        }
        for it in s["items"][:n]:
            out.append(
                Sample(
                    set=set_name,
                    item_id=it["id"],
                    question=it["question"],
                    reference=it["answer"],
                    predictions={k: p[it["id"]] for k, p in preds.items()},
                )
            )
    return out


def qa_cells(
    before: dict[str, Any], after: dict[str, Any], boot: Boot, comparable: bool = True
) -> list[Ratio]:
    """Every per-item measure of one set, after/before, paired by item id, clustered."""
    a = {r["id"]: r for r in after["per_item"]}
    common = [r for r in before["per_item"] if r["id"] in a]
    clusters = [r["cluster"] for r in common]
    cells = []
    for conv, metrics in common[0]["scores"].items():
        for m in metrics:
            if (conv, m) in CORPUS_ONLY:
                continue
            b = [r["scores"][conv][m] for r in common]
            x = [a[r["id"]]["scores"][conv][m] for r in common]
            cells.append(ratio(f"{conv} {m}", b, x, boot, clusters, comparable=comparable))
    return cells
