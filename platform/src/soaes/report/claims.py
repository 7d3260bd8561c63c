"""The paper's claims beside ours: the headline table."""

from __future__ import annotations

import math

from soaes.eval.stats import degenerate, min_detectable_ratio
from soaes.report.fmt import fmt_num, fmt_ratio
from soaes.report.schema import (
    Acceptance,
    AcceptanceRow,
    Claim,
    Comparison,
    Ratio,
    Results,
    Retention,
)

# SOAEsV2 (arXiv 2505.04723), the figures our results are set beside.
PAPER = {
    "general_retention": 0.998,
    "cpt_downstream": {"rouge-1": 1.08, "bleu-4": 1.17},
    "progressive": {"rouge-1": 1.02, "bleu-4": 1.06},
    "speculative_speedup": [1.39, 1.52],
    "speculative_outputs_identical": True,
}
_LABELS = {
    "cpt_downstream": "CPT+SFT over base+SFT",
    "progressive": "Progressive over single-stage",
}


def best_row(acc: Acceptance | None) -> AcceptanceRow | None:
    """The row of the best (or only) k of an acceptance measurement."""
    if acc is None or not acc.rows:
        return None
    k = acc.best_k if acc.best_k is not None else acc.num_speculative_tokens
    return next((r for r in acc.rows if r.k == k), acc.rows[0])


def power(cell: Ratio | None, paper: float) -> dict[str, float | bool]:
    """``{min_detectable, powered}`` of a ratio cell against the paper's effect ``paper``.

    Powered: the interval excludes 1 (an effect was detected), or the smallest effect it could
    detect with ~80% power is no larger than the paper's (a null result then says something).
    Empty for a missing cell or one without a usable interval.
    """
    if cell is None or not math.isfinite(cell.ratio) or degenerate(cell.low, cell.high):
        return {}
    mde = min_detectable_ratio(cell.low, cell.high)
    detected = cell.low > 1 or cell.high < 1
    return {"min_detectable": mde, "powered": detected or mde - 1 <= abs(paper - 1) + 1e-12}


def retention_claim(ret: Retention | None) -> Claim:
    """General ability after CPT, on the most sensitive informative measure (named)."""
    claim = "General ability kept after CPT (paper: MMLU accuracy after/before)"
    if ret is None:
        return Claim(claim=claim, paper="99.8%", ours="not run", verdict="not run", value=None)
    h = ret.headline
    if h is None:
        acc = next((c for c in ret.cells if c.metric == "MMLU accuracy"), None)
        why = acc.verdict if acc else "no general-ability measure"
        return Claim(
            claim=claim, paper="99.8%", ours=fmt_ratio(acc, pct=True), verdict=why, value=None
        )
    ours = f"{h.metric}: {fmt_ratio(h, pct=h.metric.startswith('MMLU'))}"
    pw = power(h, PAPER["general_retention"])
    return Claim(claim=claim, paper="99.8%", ours=ours, verdict=h.verdict, value=h.ratio, **pw)


def _not_above_echo(results: Results, qa_set: str | None, arms: tuple[str, str]) -> list[str]:
    """The arms that score at or below the echo baseline on the headline set."""
    ds = next((d for d in results.domain if d.name == qa_set), None)
    rows = {r.model: r for r in ds.rows} if ds else {}
    return [a for a in arms if a in rows and "not above echo" in rows[a].flags]


def comparison_claims(
    comp: Comparison | None, key: str, qa_set: str | None, results: Results
) -> list[Claim]:
    """ROUGE-1 and BLEU-4 (jieba) of one ablation on the headline set.

    When an arm does not beat the echo baseline (the question as its answer) on that set,
    the ratio compares models that do not answer: the verdict says so and no power is given.
    """
    out = []
    weak = _not_above_echo(results, qa_set, (comp.before, comp.after)) if comp else []
    for m, name in (("rouge-1", "ROUGE-1"), ("bleu-4", "BLEU-4")):
        cells = comp.cells.get(qa_set, []) if comp and qa_set else []
        cell = next((c for c in cells if c.metric == f"jieba {m}"), None)
        verdict = cell.verdict if cell else "not run"
        weak_here = weak if cell and not verdict.startswith("not comparable") else []
        if weak_here:
            verdict = f"uninformative ({', '.join(weak_here)} not above echo)"
        out.append(
            Claim(
                claim=f"{_LABELS[key]}: {name} (jieba convention, set {qa_set})",
                paper=f"{PAPER[key][m]:.2f}x",
                ours=fmt_ratio(cell),
                verdict=verdict,
                value=cell.ratio if cell else None,
                **({} if weak_here else power(cell, PAPER[key][m])),
            )
        )
    return out


def speculative_claims(results: Results) -> list[Claim]:
    """Speed-up of the served candidate at its best k, and whether greedy outputs were
    unchanged (every candidate, every k)."""
    spec = results.speculative
    name = spec.served_name()
    acc = spec.candidates().get(name)
    best = best_row(acc)
    sp = best.speedup_measured if best else None
    lo, hi = PAPER["speculative_speedup"]
    verdict = (
        "not run"
        if sp is None
        else "in paper range"
        if lo <= sp <= hi
        else "below"
        if sp < lo
        else "above"
    )
    same = [
        r.outputs_identical
        for a in spec.candidates().values()
        for r in a.rows
        if r.outputs_identical is not None
    ]
    return [
        Claim(
            claim=f"Speculative decoding speed-up (served: {name}, best k, batch 1)",
            paper=f"{lo:.2f}-{hi:.2f}x",
            ours=f"{fmt_num(sp)}x (k={best.k})" if best and sp is not None else "not run",
            verdict=verdict,
            value=sp,
        ),
        Claim(
            claim="Greedy outputs unchanged by speculation",
            paper="yes",
            ours="not run" if not same else ("yes" if all(same) else "no"),
            verdict="not run" if not same else ("holds" if all(same) else "fails"),
            value=all(same) if same else None,
        ),
    ]


def headline(results: Results, qa_set: str | None) -> list[Claim]:
    """Every claim of the paper beside ours."""
    comps = {c.key: c for c in results.comparisons}
    return [
        retention_claim(results.cpt_retention),
        *comparison_claims(comps.get("cpt_downstream"), "cpt_downstream", qa_set, results),
        *comparison_claims(comps.get("progressive"), "progressive", qa_set, results),
        *speculative_claims(results),
    ]
