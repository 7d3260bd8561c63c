"""Per-model results and paired ratio cells (MMLU, perplexity, Q&A) as typed objects.

The eval runner's per-model dicts (per-item data included) go in; :class:`ModelResult` and
:class:`Ratio` cells with clustered intervals and verdicts come out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from soaes.eval.stats import at_chance, cluster_bootstrap_mean, cluster_bootstrap_ratio, verdict
from soaes.report.schema import (
    Diagnostics,
    MMLUScores,
    ModelResult,
    Perplexity,
    Ratio,
    Retention,
    SetScores,
)

# Corpus BLEU (sacrebleu) has no per-item values to resample: it stays in the model tables.
CORPUS_ONLY = {("sacrebleu", "bleu-4")}


NOT_SEEN = ("none", "no", "")


def is_seen(value: bool | str | None) -> bool:
    """An item's ``seen_in_training``: a bool, or the corpus it was seen in (``cpt_text``,
    ...), ``"none"`` when withheld."""
    if isinstance(value, str):
        return value.strip().lower() not in NOT_SEEN
    return bool(value)


@dataclass(frozen=True)
class Boot:
    """Bootstrap settings (from the eval config's ``retention`` block)."""

    n_boot: int = 1000
    seed: int = 0
    ci: float = 0.95


def ratio(
    metric: str,
    before: Sequence[float],
    after: Sequence[float],
    boot: Boot,
    clusters: Sequence[Any] | None = None,
    informative: bool = True,
    comparable: bool = True,
    **kw: Any,
) -> Ratio:
    """A :class:`Ratio` cell: clustered bootstrap plus its verdict."""
    lower = kw.get("transform") == "exp_mean"
    d = cluster_bootstrap_ratio(
        before, after, clusters, n_boot=boot.n_boot, seed=boot.seed, ci=boot.ci, **kw
    )
    words = verdict(d, informative=informative, comparable=comparable, lower_is_better=lower)
    return Ratio(metric=metric, verdict=words, lower_is_better=lower, **d)


def set_scores(raw: dict[str, Any], items: Sequence[dict[str, Any]]) -> SetScores:
    """One model's raw set result (runner's ``_score_set``) with its items' disclosure."""
    seen = [it["seen_in_training"] for it in items if "seen_in_training" in it]
    return SetScores(
        source=raw["source"],
        scoring=raw["scoring"],
        n_items=raw["n_items"],
        n_clusters=len({it["cluster"] for it in items}),
        n_malformed=raw["n_malformed"],
        n_seen_in_training=sum(map(is_seen, seen)) if len(seen) == len(items) else None,
        scores={  # numbers only (score_corpus also names its convention)
            conv: {k: v for k, v in d.items() if isinstance(v, int | float)}
            for conv, d in raw["scores"].items()
        },
        diagnostics=Diagnostics(**raw["diagnostics"]),
    )


def mmlu_scores(raw: dict[str, Any], boot: Boot) -> MMLUScores:
    """MMLU summary with the accuracy's interval and whether it includes chance."""
    acc = cluster_bootstrap_mean(
        [r["correct"] for r in raw["per_item"]], n_boot=boot.n_boot, seed=boot.seed, ci=boot.ci
    )
    return MMLUScores(
        n=raw["n"],
        accuracy=raw["accuracy"],
        accuracy_low=acc["low"],
        accuracy_high=acc["high"],
        p_correct=raw["p_correct"],
        scoring=raw["scoring"],
        at_chance=at_chance(acc["low"], acc["high"]),
    )


def model_result(raw: dict[str, Any], qa_items: dict[str, list[dict]], boot: Boot) -> ModelResult:
    """A :class:`ModelResult` from the runner's per-model dict."""
    return ModelResult(
        path=raw["path"],
        seconds=raw["seconds"],
        qa={k: set_scores(v, qa_items[k]) for k, v in raw["qa"].items()},
        mmlu=mmlu_scores(raw["mmlu"], boot) if raw["mmlu"] else None,
        perplexity={
            k: Perplexity(
                group=v["group"], ppl=v["ppl"], n_docs=v["n_docs"], n_tokens=v["n_tokens"]
            )
            for k, v in raw["perplexity"].items()
        },
    )


def mmlu_cells(before: dict, after: dict, boot: Boot) -> list[Ratio]:
    """MMLU accuracy and p(correct) after/before, paired by item id.

    Accuracy is uninformative when the reference model's accuracy interval includes chance.
    """
    a = {r["id"]: r for r in after["per_item"]}
    common = [r for r in before["per_item"] if r["id"] in a]
    if not common:
        raise ValueError("MMLU: the two runs share no item ids")
    informative = not mmlu_scores(before, boot).at_chance
    return [
        ratio(
            label,
            [r[key] for r in common],
            [a[r["id"]][key] for r in common],
            boot,
            informative=informative if key == "correct" else True,
        )
        for key, label in (("correct", "MMLU accuracy"), ("p_correct", "MMLU p(correct option)"))
    ]


def ppl_cells(before: dict, after: dict, boot: Boot) -> list[Ratio]:
    """Perplexity after/before on every shared held-out set (below 1 is better)."""
    cells = []
    for name, b in before.items():
        if name not in after:
            continue
        tokens = [d["tokens"] for d in b["per_item"]]
        if tokens != [d["tokens"] for d in after[name]["per_item"]]:
            raise ValueError(f"perplexity {name}: the runs scored different token counts")
        cells.append(
            ratio(
                f"perplexity {name} ({b['group']})",
                [d["nll"] for d in b["per_item"]],
                [d["nll"] for d in after[name]["per_item"]],
                boot,
                weights=tokens,
                transform="exp_mean",
            )
        )
    return cells


def sensitive_headline(cells: Sequence[Ratio]) -> Ratio | None:
    """The informative general-ability cell with the narrowest relative interval.

    Candidates: MMLU accuracy, MMLU p(correct option), perplexity on general text; a cell
    whose verdict is "uninformative" is never chosen.
    """
    ok = [
        c
        for c in cells
        if not c.verdict.startswith("uninformative")
        and math.isfinite(c.ratio)
        and (c.metric.startswith("MMLU") or "(general)" in c.metric)
    ]
    return min(ok, key=lambda c: (c.high - c.low) / abs(c.ratio), default=None)


def retention(name: str, baseline: str, before: dict, after: dict, boot: Boot) -> Retention:
    """General ability of ``after`` against ``before`` with the headline measure named."""
    cells = []
    if before["mmlu"] and after["mmlu"]:
        cells += mmlu_cells(before["mmlu"], after["mmlu"], boot)
    cells += ppl_cells(before["perplexity"], after["perplexity"], boot)
    return Retention(model=name, baseline=baseline, cells=cells, headline=sensitive_headline(cells))
