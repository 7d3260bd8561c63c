"""The report's quality sections as blocks (see :mod:`soaes.report.render`), from typed results."""

from __future__ import annotations

import math

from soaes.report.claims import PAPER
from soaes.report.fmt import NOT_RUN, fmt_num, fmt_ratio
from soaes.report.render import Block, bars_paper_vs_ours
from soaes.report.schema import Claim, Comparison, DomainSet, Parity, Ratio, Results, Retention

CONVENTIONS_TEXT = (
    "Two scoring conventions, always labelled. **jieba** (LLaMA-Factory's): ROUGE-1/2/L F1 over "
    "jieba words (English: lowercased words), BLEU-4 over characters (English: sacrebleu 13a "
    "tokens) with NIST geometric smoothing (nltk method3), per sample x100, averaged. "
    "**sacrebleu**: corpus BLEU with tokenize='zh' (English: 13a), ROUGE over characters "
    "(English: lowercased words), per sample x100, averaged. **article_id**: 1 when the answer "
    "names the law and the article number, else 0. Ratios are after/before on the same items; "
    "[low, high] is a paired bootstrap interval that resamples source documents (clusters), "
    "not items. A verdict is a gain or a loss only when the interval excludes 1; otherwise "
    "'no effect detected' with the smallest effect this interval could detect (80% power). "
    "'Uninformative': the reference is at chance (MMLU accuracy whose interval includes 25%) "
    "or the interval has zero width. 'Not comparable': the arms fail parity."
)
_DIAG = ["mean tokens", "truncated", "empty", "EOS", "repeats question", "loops"]


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def headline_blocks(claims: list[Claim]) -> list[Block]:
    """The paper's claims beside ours."""
    rows = [[c.claim, c.paper, c.ours, c.verdict] for c in claims]
    return [
        ("h2", "Headline: the paper's claims beside ours"),
        ("table", ["claim", "paper", "ours", "verdict"], rows),
    ]


def power_blocks(claims: list[Claim]) -> list[Block]:
    """Whether each quality claim was powered: its interval excludes 1, or it could have
    detected the paper's effect. Claims without an interval (not run, speed) are left out."""
    rated = [c for c in claims if c.powered is not None]
    if not rated:
        return []
    weak = [c for c in rated if not c.powered]
    lines = [
        f"{c.claim}: the smallest effect this run could detect is ~{c.min_detectable:.2f}x "
        f"against the paper's {c.paper}"
        for c in weak
    ]
    if not weak:
        text = (
            f"**Powered**: each of the {len(rated)} quality claims with an interval either "
            "detected an effect (interval excludes 1) or could have detected the paper's."
        )
        return [("p", text)]
    text = (
        f"**Not powered**: {len(weak)} of {len(rated)} quality claims could neither detect an "
        "effect nor one as large as the paper's; their null results say little."
    )
    return [("p", text), ("ul", lines)]


def stages_blocks(res: Results) -> list[Block]:
    """The recipe's stages and their wall times (recipe runs only)."""
    if not res.stages:
        return []
    rows = [
        [s.stage, s.status, "n/a" if s.seconds is None else f"{s.seconds / 60:.1f} min"]
        for s in res.stages
    ]
    total = sum(s.seconds or 0.0 for s in res.stages)
    rows.append(["total", "", f"{total / 60:.1f} min"])
    return [("h2", "Stages and wall times"), ("table", ["stage", "status", "wall time"], rows)]


def models_blocks(res: Results) -> list[Block]:
    """MMLU (with its interval against chance) and perplexities of every model."""
    blocks: list[Block] = [("h2", "Models evaluated")]
    lm = {k: m for k, m in res.models.items() if m.mmlu or m.perplexity}
    if not lm:
        return [*blocks, ("p", NOT_RUN)]
    ppl_sets = sorted({s for m in lm.values() for s in m.perplexity})
    rows = []
    for name, m in lm.items():
        mm = m.mmlu
        acc = (
            "n/a"
            if mm is None
            else f"{mm.accuracy:.3f} [{mm.accuracy_low:.3f}, {mm.accuracy_high:.3f}]"
        )
        chance = "" if mm is None else (" at chance" if mm.at_chance else "")
        ppl = [fmt_num(m.perplexity[s].ppl) if s in m.perplexity else "n/a" for s in ppl_sets]
        rows.append([name, m.path, acc + chance, fmt_num(mm.p_correct if mm else None, 3), *ppl])
    n = next((m.mmlu.n for m in lm.values() if m.mmlu), None)
    head = [
        "model",
        "path",
        "MMLU accuracy [CI]",
        "MMLU p(correct)",
        *[f"ppl {s}" for s in ppl_sets],
    ]
    return [
        *blocks,
        ("p", f"MMLU subset: {n} questions (chance: 25%)." if n else "MMLU not run."),
        ("table", head, rows),
    ]


def _domain_table(d: DomainSet) -> Block:
    rows = [
        [
            r.model,
            r.role,
            fmt_num(r.score),
            fmt_num(r.diagnostics.mean_tokens, 1),
            *[
                _pct(v)
                for v in (
                    r.diagnostics.share_truncated,
                    r.diagnostics.share_empty,
                    r.diagnostics.share_eos,
                    r.diagnostics.share_repeat_question,
                    r.diagnostics.share_loop,
                )
            ],
            "; ".join(r.flags),
        ]
        for r in d.rows
    ]
    return ("table", ["model", "role", d.main_metric, *_DIAG, "flags"], rows)


def domain_blocks(res: Results) -> list[Block]:
    """Each Q&A set on its own: every model beside echo and base, with answer diagnostics."""
    blocks: list[Block] = [("h2", "Domain Q&A, set by set")]
    if not res.domain:
        return [*blocks, ("p", NOT_RUN)]
    for d in res.domain:
        cap = d.rows[0].diagnostics.max_new_tokens
        blocks += [
            ("h3", f"{d.name}: {d.n_items} items from {d.n_clusters} sources"),
            (
                "p",
                f"Seen in training: {d.disclosure}. Token cap {cap}. echo = the question as the answer.",
            ),
            _domain_table(d),
        ]
    return blocks


def samples_blocks(res: Results) -> list[Block]:
    """The first predictions of each model side by side (cut at 80 characters)."""
    if not res.samples:
        return []
    names = list(res.samples[0].predictions)
    rows = [
        [s.set, s.item_id, s.reference[:80], *[s.predictions.get(n, "")[:80] for n in names]]
        for s in res.samples
    ]
    return [
        (
            "h3",
            "Predictions side by side (first items of each set; full per-item files in predictions/)",
        ),
        ("table", ["set", "item", "reference", *names], rows),
    ]


def _cells_table(cells: list[Ratio], paper: dict[str, float] | None = None) -> Block:
    rows = [
        [
            c.metric,
            fmt_num(c.before, 3),
            fmt_num(c.after, 3),
            fmt_ratio(c),
            c.verdict,
            f"{paper[c.metric.split()[-1]]:.2f}x"
            if paper and c.metric.startswith("jieba") and c.metric.split()[-1] in paper
            else "",
        ]
        for c in cells
    ]
    return (
        "table",
        ["measure", "before", "after", "ratio [CI] (n, clusters)", "verdict", "paper"],
        rows,
    )


def retention_blocks(res: Results) -> list[Block]:
    """General ability of every model against the baseline."""
    base = res.retention[0].baseline if res.retention else "the baseline"
    blocks: list[Block] = [("h2", f"Retention against {base}")]
    if not res.retention:
        return [*blocks, ("p", NOT_RUN)]
    for r in res.retention:
        blocks += [("h3", f"{r.model} / {r.baseline}"), _cells_table(r.cells)]
    return blocks


def _headline_line(r: Retention) -> str:
    if r.headline is None:
        return "No informative general-ability measure: retention cannot be shown at this scale."
    return f"Headline measure (most sensitive informative one): {r.headline.metric}."


def cpt_blocks(res: Results) -> list[Block]:
    """CPT: general retention with its headline measure, and a figure of the ratios."""
    blocks: list[Block] = [("h2", "Continual pre-training (CPT)")]
    r = res.cpt_retention
    if r is None:
        return [*blocks, ("h3", "General-capability retention"), ("p", NOT_RUN)]
    cells = [c for c in r.cells if math.isfinite(c.ratio)]
    blocks += [
        ("h3", f"General-capability retention: {r.model} vs {r.baseline}"),
        ("p", _headline_line(r)),
        _cells_table(r.cells),
    ]
    if cells:
        fig = bars_paper_vs_ours(
            [c.metric[:24] for c in cells],
            [PAPER["general_retention"] if c.metric == "MMLU accuracy" else None for c in cells],
            [c.ratio for c in cells],
            "After/before CPT (perplexity: below 1 is better)",
            errors=[(c.low, c.high) if math.isfinite(c.low) else None for c in cells],
        )
        blocks.append(
            ("fig", "cpt_retention", fig, "CPT ratios with their intervals (paper in blue)")
        )
    return blocks


def parity_blocks(p: Parity | None) -> list[Block]:
    """The parity table of one ablation and its verdict."""
    if p is None:
        return [("p", "Parity: the arms' training runs were not given (report.train_runs).")]
    rows = [
        [
            a.model,
            s.source,
            fmt_num(s.examples, 0),
            fmt_num(s.tokens, 0),
            f"{s.peak_lr:g}",
            s.schedule,
            a.steps,
            a.start,
        ]
        for a in p.arms
        for s in a.sources
    ]
    status = "comparable" if p.comparable else "NOT comparable: " + "; ".join(p.reasons)
    head = ["arm", "source", "examples", "tokens", "peak LR", "schedule", "steps", "start"]
    return [("p", f"Parity ({p.tolerance}): {status}."), ("table", head, rows)]


def comparison_blocks(res: Results) -> list[Block]:
    """Each ablation: parity first, then every shared set's ratios."""
    comps: dict[str, Comparison] = {c.key: c for c in res.comparisons}
    blocks: list[Block] = []
    for key, title in (
        ("cpt_downstream", "Downstream: base+SFT vs CPT+SFT"),
        ("progressive", "Domain-progressive vs single-stage SFT"),
    ):
        blocks.append(("h2", title))
        c = comps.get(key)
        if c is None:
            blocks.append(("p", NOT_RUN))
            continue
        blocks += [("p", f"{c.after} over {c.before}."), *parity_blocks(c.parity)]
        for set_name, cells in c.cells.items():
            blocks += [("h3", f"{set_name}"), _cells_table(cells, PAPER[key])]
    return blocks
