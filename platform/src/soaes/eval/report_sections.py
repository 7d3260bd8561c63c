"""The report's sections as blocks (see :mod:`soaes.eval.render`), one function a section."""

from __future__ import annotations

from soaes.eval.metrics import METRIC_NAMES
from soaes.eval.render import Block, bars_paper_vs_ours, line_plot
from soaes.eval.report import NOT_RUN, PAPER, best_row, fmt_num, fmt_ratio

CONVENTIONS_TEXT = (
    "Two scoring conventions, always labelled. **jieba** (LLaMA-Factory's): ROUGE-1/2/L F1 over "
    "jieba words (English: lowercased words), BLEU-4 over characters (English: sacrebleu 13a "
    "tokens) with NIST geometric smoothing (nltk method3), per sample x100, averaged. "
    "**sacrebleu**: corpus BLEU with tokenize='zh' (English: 13a), ROUGE over characters "
    "(English: lowercased words), per sample x100, averaged. Ratios are after/before on the same "
    "items; [low, high] is a paired bootstrap interval over items."
)


def _ci(d: dict | None) -> tuple[float, float] | None:
    if d and isinstance(d.get("low"), int | float) and isinstance(d.get("high"), int | float):
        return d["low"], d["high"]
    return None


def _val(d: dict | None):
    return d.get("ratio") if d else None


def headline_blocks(claims: list[dict]) -> list[Block]:
    rows = [[c["claim"], c["paper"], c["ours"], c["verdict"]] for c in claims]
    return [
        ("h2", "Headline: the paper's claims beside ours"),
        ("table", ["claim", "paper", "ours", "verdict"], rows),
    ]


def models_blocks(results: dict) -> list[Block]:
    models = results.get("models") or {}
    blocks: list[Block] = [("h2", "Models evaluated")]
    if not models:
        return [*blocks, ("p", NOT_RUN)]
    ppl_sets = sorted({s for m in models.values() for s in (m.get("perplexity") or {})})
    rows = []
    for name, m in models.items():
        mm = m.get("mmlu") or {}
        rows.append(
            [
                name,
                m.get("path", ""),
                fmt_num(mm.get("accuracy"), 3),
                fmt_num(mm.get("p_correct"), 3),
                *[
                    fmt_num(((m.get("perplexity") or {}).get(s) or {}).get("ppl"), 2)
                    for s in ppl_sets
                ],
            ]
        )
    blocks.append(
        (
            "table",
            ["model", "path", "MMLU acc", "MMLU p(correct)", *[f"ppl {s}" for s in ppl_sets]],
            rows,
        )
    )
    qa_rows = [
        [name, set_name, conv, *[fmt_num(q[conv][k]) for k in METRIC_NAMES], q.get("n_items", "")]
        for name, m in models.items()
        for set_name, q in (m.get("qa") or {}).items()
        for conv in ("jieba", "sacrebleu")
    ]
    if qa_rows:
        blocks += [
            ("h3", "Domain Q&A (0-100)"),
            ("table", ["model", "set", "convention", *METRIC_NAMES, "items"], qa_rows),
        ]
    return blocks


def retention_blocks(results: dict) -> list[Block]:
    ret = results.get("retention") or {}
    blocks: list[Block] = [("h2", f"Retention against {ret.get('baseline', 'the baseline')}")]
    if not ret.get("models"):
        return [*blocks, ("p", NOT_RUN)]
    rows = [
        [
            name,
            fmt_ratio(r.get("mmlu_accuracy"), pct=True),
            fmt_ratio(r.get("mmlu_p_correct"), pct=True),
            "; ".join(f"{s}: {fmt_ratio(p)}" for s, p in (r.get("perplexity") or {}).items()),
        ]
        for name, r in ret["models"].items()
    ]
    return [
        *blocks,
        ("table", ["model", "MMLU accuracy", "MMLU p(correct)", "perplexity ratio"], rows),
    ]


def _ratio_table(section: dict, paper: dict) -> list[list[str]]:
    rows = []
    for conv in ("jieba", "sacrebleu"):
        for m in METRIC_NAMES:
            d = (section.get(conv) or {}).get(m)
            if d:
                rows.append(
                    [
                        m,
                        conv,
                        fmt_num(d.get("before")),
                        fmt_num(d.get("after")),
                        fmt_ratio(d),
                        f"{paper[m]:.2f}x" if conv == "jieba" and m in paper else "",
                    ]
                )
    return rows


def cpt_blocks(results: dict) -> list[Block]:
    cpt = results.get("cpt") or {}
    blocks: list[Block] = [("h2", "Continual pre-training (CPT)")]
    if not cpt:
        return [*blocks, ("p", NOT_RUN)]
    if cpt.get("mmlu_accuracy"):
        blocks += [
            ("h3", f"General-capability retention: {cpt['after']} vs {cpt['before']}"),
            (
                "table",
                ["measure", "before", "after", "retention", "paper"],
                [
                    [
                        label,
                        fmt_num(d.get("before"), 3),
                        fmt_num(d.get("after"), 3),
                        fmt_ratio(d, pct=True),
                        "99.8%" if key == "mmlu_accuracy" else "",
                    ]
                    for key, label in (
                        ("mmlu_accuracy", "MMLU accuracy"),
                        ("mmlu_p_correct", "MMLU p(correct option)"),
                    )
                    if (d := cpt.get(key))
                ],
            ),
        ]
    else:
        blocks += [("h3", "General-capability retention"), ("p", NOT_RUN)]
    ppl = cpt.get("perplexity") or {}
    if ppl:
        blocks += [
            ("h3", "Perplexity on held-out text (after/before; below 1 is better)"),
            (
                "table",
                ["set", "group", "before", "after", "ratio"],
                [
                    [s, d["group"], fmt_num(d.get("before")), fmt_num(d.get("after")), fmt_ratio(d)]
                    for s, d in ppl.items()
                ],
            ),
        ]
        blocks.append(
            (
                "fig",
                "cpt_perplexity",
                bars_paper_vs_ours(
                    list(ppl),
                    [None] * len(ppl),
                    [_val(d) for d in ppl.values()],
                    "Perplexity after/before CPT (paper: domain down, general kept)",
                    errors=[_ci(d) for d in ppl.values()],
                ),
                "Perplexity ratio after/before CPT",
            )
        )
    down = cpt.get("downstream") or {}
    blocks.append(("h3", "Downstream: base+SFT vs CPT+SFT"))
    if down.get("jieba"):
        blocks += [
            (
                "p",
                f"{down['after']} over {down['before']} on {down['qa_set']} "
                f"({down.get('n', '?')} items).",
            ),
            (
                "table",
                ["metric", "convention", "base+SFT", "CPT+SFT", "ratio", "paper"],
                _ratio_table(down, PAPER["cpt_downstream"]),
            ),
        ]
    else:
        blocks.append(("p", NOT_RUN))
    j = down.get("jieba") or {}
    ret = cpt.get("mmlu_accuracy")
    blocks.append(
        (
            "fig",
            "cpt_paper_vs_ours",
            bars_paper_vs_ours(
                ["general retention", "ROUGE-1 ratio", "BLEU-4 ratio"],
                [PAPER["general_retention"], *PAPER["cpt_downstream"].values()],
                [_val(ret), _val(j.get("rouge-1")), _val(j.get("bleu-4"))],
                "CPT: paper vs ours",
                errors=[_ci(ret), _ci(j.get("rouge-1")), _ci(j.get("bleu-4"))],
            ),
            "CPT claims: paper (blue) beside ours (orange, 95% CI)",
        )
    )
    return blocks


def progressive_blocks(results: dict) -> list[Block]:
    prog = results.get("progressive") or {}
    blocks: list[Block] = [("h2", "Domain-progressive vs single-stage SFT")]
    if not prog.get("jieba"):
        return [*blocks, ("p", NOT_RUN)]
    j = prog["jieba"]
    return [
        *blocks,
        (
            "p",
            f"{prog['after']} (progressive) over {prog['before']} (single stage) on "
            f"{prog['qa_set']} ({prog.get('n', '?')} items).",
        ),
        (
            "table",
            ["metric", "convention", "single-stage", "progressive", "ratio", "paper"],
            _ratio_table(prog, PAPER["progressive"]),
        ),
        (
            "fig",
            "progressive_paper_vs_ours",
            bars_paper_vs_ours(
                ["ROUGE-1 ratio", "BLEU-4 ratio"],
                list(PAPER["progressive"].values()),
                [_val(j.get("rouge-1")), _val(j.get("bleu-4"))],
                "Progressive SFT: paper vs ours",
                errors=[_ci(j.get("rouge-1")), _ci(j.get("bleu-4"))],
            ),
            "Progressive over single-stage: paper beside ours (95% CI)",
        ),
    ]


def speculative_blocks(results: dict) -> list[Block]:
    spec = results.get("speculative") or {}
    blocks: list[Block] = [("h2", "Speculative decoding with the distilled draft")]
    if not (spec.get("distilled") or {}).get("rows"):
        return [*blocks, ("p", NOT_RUN)]
    lo, hi = PAPER["speculative_speedup"]
    rows, speed, pos = [], {}, {}
    for variant, acc in spec.items():
        if not (acc or {}).get("rows"):
            continue
        for r in acc["rows"]:
            rows.append(
                [
                    variant,
                    r.get("k"),
                    fmt_num(r.get("acceptance_rate"), 3),
                    fmt_num(r.get("mean_acceptance_length")),
                    fmt_num(r.get("speedup_measured")),
                    fmt_num(r.get("speedup_theoretical")),
                    str(r.get("outputs_identical", "n/a")),
                ]
            )
        ks = [r["k"] for r in acc["rows"]]
        if any(r.get("speedup_measured") is not None for r in acc["rows"]):
            speed[f"{variant} measured"] = (ks, [r.get("speedup_measured") for r in acc["rows"]])
        if any(r.get("speedup_theoretical") is not None for r in acc["rows"]):
            speed[f"{variant} bound"] = (ks, [r.get("speedup_theoretical") for r in acc["rows"]])
        best = best_row(acc)
        if best and best.get("per_position"):
            pp = best["per_position"]
            pos[f"{variant} (k={best['k']})"] = (list(range(1, len(pp) + 1)), pp)
    c = spec["distilled"].get("c")
    blocks += [
        (
            "p",
            f"Paper: {lo}-{hi}x faster, outputs unchanged. Draft/target step-cost "
            f"ratio c = {fmt_num(c)}.",
        ),
        (
            "table",
            [
                "draft",
                "k",
                "acceptance",
                "mean accepted length",
                "speed-up",
                "bound",
                "identical outputs",
            ],
            rows,
        ),
    ]
    if pos:
        blocks.append(
            (
                "fig",
                "spec_acceptance_by_position",
                line_plot(
                    pos, "Acceptance by draft position", "position", "share of drafts accepted"
                ),
                "Acceptance by position (best k of each draft)",
            )
        )
    if speed:
        blocks.append(
            (
                "fig",
                "spec_speedup_vs_k",
                line_plot(
                    speed,
                    "Speed-up against k",
                    "k (drafted tokens)",
                    "speed-up x",
                    band=(lo, hi, "paper 1.39-1.52x"),
                    ref_line=1.0,
                ),
                "Speed-up against k",
            )
        )
    return blocks


def serving_blocks(results: dict) -> list[Block]:
    """The serve benchmark (``soaes bench serve``): HTTP through Ray Serve vs in-process vLLM."""
    res = results.get("serving") or {}
    blocks: list[Block] = [("h2", "Serving: Ray Serve app, target + distilled draft")]
    single, load = res.get("single_stream"), res.get("load")
    if not single:
        return [*blocks, ("p", NOT_RUN)]
    t = single.get("tokens_per_s") or {}
    blocks += [
        (
            "p",
            f"Single stream, {single.get('prompts')} prompts x {single.get('max_tokens')} "
            f"tokens, greedy, k={res.get('k')}. Identical outputs over HTTP and in-process, "
            f"with and without the draft: {single.get('identical_outputs_all_four')}.",
        ),
        (
            "table",
            ["path", "target + draft tok/s", "target alone tok/s", "speed-up"],
            [
                [
                    "HTTP via Serve",
                    fmt_num(t.get("spec")),
                    fmt_num(t.get("plain")),
                    fmt_num(single.get("speedup_spec_vs_plain_http")),
                ],
                [
                    "in-process vLLM",
                    fmt_num(t.get("inproc_spec")),
                    fmt_num(t.get("inproc_plain")),
                    fmt_num(single.get("speedup_spec_vs_plain_inproc")),
                ],
            ],
        ),
        (
            "p",
            "Serve overhead (HTTP / in-process tokens/s): "
            f"{fmt_num(single.get('serve_overhead_http_vs_inproc'))}x with the draft, "
            f"{fmt_num(single.get('serve_overhead_plain'))}x without.",
        ),
    ]
    if load:
        acc = load.get("acceptance") or {}
        blocks.append(
            (
                "table",
                [
                    "requests",
                    "concurrency",
                    "statuses",
                    "tokens/s",
                    "latency p50 / p99 s",
                    "TTFT p50 / p99 s",
                    "acceptance",
                    "mean accepted length",
                    "replica died",
                ],
                [
                    [
                        load.get("requests"),
                        res.get("concurrency"),
                        str(load.get("by_status")),
                        fmt_num(load.get("tokens_per_s")),
                        f"{fmt_num(load.get('latency_p50_s'))} / {fmt_num(load.get('latency_p99_s'))}",
                        f"{fmt_num(load.get('ttft_p50_s'))} / {fmt_num(load.get('ttft_p99_s'))}",
                        fmt_num(acc.get("acceptance_rate"), 3),
                        fmt_num(acc.get("mean_acceptance_length")),
                        str(not load.get("no_replica_died", True)),
                    ]
                ],
            )
        )
    return blocks


def loss_blocks(results: dict) -> list[Block]:
    curves = results.get("loss_curves") or {}
    blocks: list[Block] = [("h2", "Loss curves")]
    if not any(curves.values()):
        return [*blocks, ("p", NOT_RUN)]
    rows = []
    for label, series in curves.items():
        if not series:
            continue
        for name, pts in series.items():
            rows.append([label, name, len(pts), fmt_num(pts[0][1], 4), fmt_num(pts[-1][1], 4)])
        blocks.append(
            (
                "fig",
                f"loss_{label}",
                line_plot(
                    {n: ([p[0] for p in pts], [p[1] for p in pts]) for n, pts in series.items()},
                    f"Loss: {label}",
                    "step",
                    "loss",
                ),
                f"Loss curve: {label}",
            )
        )
    return [*blocks, ("table", ["run", "series", "points", "first", "last"], rows)]


def build_blocks(results: dict, claims: list[dict]) -> list[Block]:
    """Every section, in order; missing data renders as "not run"."""
    head = [
        ("h1", results.get("title") or "soaes report"),
        (
            "p",
            f"Created {results.get('created', '')}"
            + (f"; profile {results['profile']}" if results.get("profile") else "")
            + ".",
        ),
    ]
    return [
        *head,
        *headline_blocks(claims),
        *models_blocks(results),
        *retention_blocks(results),
        *cpt_blocks(results),
        *progressive_blocks(results),
        *speculative_blocks(results),
        *serving_blocks(results),
        *loss_blocks(results),
        ("h2", "Scoring conventions"),
        ("p", CONVENTIONS_TEXT),
    ]
