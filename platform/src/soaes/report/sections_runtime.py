"""The report's speed sections (speculative decoding, serving) and the loss curves."""

from __future__ import annotations

from soaes.report.claims import PAPER, best_row
from soaes.report.fmt import NOT_RUN, fmt_num
from soaes.report.render import Block, line_plot
from soaes.report.schema import Acceptance, LossCurves, Results, Serving, Speculative

_SPEC_HEAD = [
    "draft",
    "k",
    "acceptance",
    "mean accepted length",
    "speed-up",
    "bound",
    "identical outputs",
]


def _spec_rows(variant: str, acc: Acceptance) -> list[list]:
    return [
        [
            variant,
            r.k,
            fmt_num(r.acceptance_rate, 3),
            fmt_num(r.mean_acceptance_length),
            fmt_num(r.speedup_measured),
            fmt_num(r.speedup_theoretical),
            str(r.outputs_identical) if r.outputs_identical is not None else "n/a",
        ]
        for r in acc.rows
    ]


def _spec_figures(variants: dict[str, Acceptance]) -> list[Block]:
    speed, pos = {}, {}
    for variant, acc in variants.items():
        ks = [r.k for r in acc.rows]
        if any(r.speedup_measured is not None for r in acc.rows):
            speed[f"{variant} measured"] = (ks, [r.speedup_measured for r in acc.rows])
        if any(r.speedup_theoretical is not None for r in acc.rows):
            speed[f"{variant} bound"] = (ks, [r.speedup_theoretical for r in acc.rows])
        best = best_row(acc)
        if best and best.per_position:
            pp = best.per_position
            pos[f"{variant} (k={best.k})"] = (list(range(1, len(pp) + 1)), pp)
    lo, hi = PAPER["speculative_speedup"]
    out: list[Block] = []
    if pos:
        fig = line_plot(pos, "Acceptance by draft position", "position", "share of drafts accepted")
        out.append(
            (
                "fig",
                "spec_acceptance_by_position",
                fig,
                "Acceptance by position (best k of each draft)",
            )
        )
    if speed:
        fig = line_plot(
            speed,
            "Speed-up against k",
            "k (drafted tokens)",
            "speed-up x",
            band=(lo, hi, "paper 1.39-1.52x"),
            ref_line=1.0,
        )
        out.append(("fig", "spec_speedup_vs_k", fig, "Speed-up against k"))
    return out


def measurement_differences(a: Acceptance, b: Acceptance) -> list[str]:
    """Where two acceptance measurements differ (target, prompts, tokens, k): empty at parity."""
    out = [
        f"{name}: {x} vs {y}"
        for name, x, y in (
            ("target", a.target, b.target),
            ("prompts", a.num_prompts, b.num_prompts),
            ("max tokens", a.max_tokens, b.max_tokens),
            ("k", [r.k for r in a.rows], [r.k for r in b.rows]),
        )
        if x != y
    ]
    return out


def _parity_line(spec: Speculative) -> Block:
    if spec.undistilled is None or spec.distilled is None:
        return ("p", "Undistilled draft: not measured.")
    diff = measurement_differences(spec.distilled, spec.undistilled)
    d = spec.distilled
    same = f"same target, {d.num_prompts} prompts x {d.max_tokens} tokens, same k"
    return (
        "p",
        f"Distilled vs undistilled: {same if not diff else 'NOT comparable: ' + '; '.join(diff)}.",
    )


def speculative_blocks(res: Results) -> list[Block]:
    """Acceptance, speed-up and bound per k for every candidate, with figures."""
    blocks: list[Block] = [("h2", "Speculative decoding: every candidate, side by side")]
    spec = res.speculative
    variants = spec.candidates()
    if not variants:
        return [*blocks, ("p", NOT_RUN)]
    lo, hi = PAPER["speculative_speedup"]
    rows = [row for k, v in variants.items() for row in _spec_rows(k, v)]
    costs = ", ".join(f"{k} {fmt_num(v.c)}" for k, v in variants.items() if v.c is not None)
    return [
        *blocks,
        (
            "p",
            f"Paper: {lo}-{hi}x faster, outputs unchanged. Measured per decode step at batch 1 "
            f"(speed-up and bound); draft/target step-cost ratio c: {costs or 'n/a'}. Served "
            f"(chosen by measurement): {spec.served_name()}.",
        ),
        _parity_line(spec),
        ("table", _SPEC_HEAD, rows),
        *_spec_figures(variants),
    ]


def _load_table(res: Serving) -> Block:
    load = res.load
    acc = load.acceptance
    row = [
        load.requests,
        res.concurrency,
        str(load.by_status),
        fmt_num(load.tokens_per_s),
        f"{fmt_num(load.latency_p50_s)} / {fmt_num(load.latency_p99_s)}",
        f"{fmt_num(load.ttft_p50_s)} / {fmt_num(load.ttft_p99_s)}",
        fmt_num(acc.get("acceptance_rate"), 3),
        fmt_num(acc.get("mean_acceptance_length")),
        str(not load.no_replica_died),
    ]
    head = [
        "requests",
        "concurrency",
        "statuses",
        "tokens/s",
        "latency p50 / p99 s",
        "TTFT p50 / p99 s",
        "acceptance",
        "mean accepted length",
        "replica died",
    ]
    return ("table", head, [row])


def serving_blocks(res: Results) -> list[Block]:
    """The serve benchmark (``soaes bench serve``): HTTP through Ray Serve vs in-process vLLM."""
    blocks: list[Block] = [("h2", "Serving: Ray Serve app, target + distilled draft")]
    sv = res.serving
    if sv is None or sv.single_stream is None:
        return [*blocks, ("p", NOT_RUN)]
    s, t = sv.single_stream, sv.single_stream.tokens_per_s
    blocks += [
        (
            "p",
            f"Single stream, {s.prompts} prompts x {s.max_tokens} tokens, greedy, k={sv.k}. Identical outputs over HTTP and in-process, with and without the draft: {s.identical_outputs_all_four}.",
        ),
        (
            "table",
            ["path", "target + draft tok/s", "target alone tok/s", "speed-up"],
            [
                [
                    "HTTP via Serve",
                    fmt_num(t.get("spec")),
                    fmt_num(t.get("plain")),
                    fmt_num(s.speedup_spec_vs_plain_http),
                ],
                [
                    "in-process vLLM",
                    fmt_num(t.get("inproc_spec")),
                    fmt_num(t.get("inproc_plain")),
                    fmt_num(s.speedup_spec_vs_plain_inproc),
                ],
            ],
        ),
        (
            "p",
            f"Serve overhead (HTTP / in-process tokens/s): {fmt_num(s.serve_overhead_http_vs_inproc)}x with the draft, {fmt_num(s.serve_overhead_plain)}x without.",
        ),
    ]
    return [*blocks, _load_table(sv)] if sv.load else blocks


def loss_blocks(curves: LossCurves) -> list[Block]:
    """One figure per training run and a first/last table."""
    blocks: list[Block] = [("h2", "Loss curves")]
    if not any(curves.values()):
        return [*blocks, ("p", NOT_RUN)]
    rows = []
    for label, series in curves.items():
        if not series:
            continue
        for name, pts in series.items():
            rows.append([label, name, len(pts), fmt_num(pts[0][1], 4), fmt_num(pts[-1][1], 4)])
        lines = {n: ([p[0] for p in pts], [p[1] for p in pts]) for n, pts in series.items()}
        fig = line_plot(lines, f"Loss: {label}", "step", "loss")
        blocks.append(("fig", f"loss_{label}", fig, f"Loss curve: {label}"))
    return [*blocks, ("table", ["run", "series", "points", "first", "last"], rows)]
