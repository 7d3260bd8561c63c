"""Rendering for the report: blocks to Markdown and self-contained HTML, and the figures.

A report is a list of blocks, each a tuple: ``("h1"|"h2"|"h3", text)``, ``("p", text)``,
``("ul", items)``, ``("table", header, rows)`` or ``("fig", name, png_bytes, caption)``. The same blocks render
to Markdown (figures saved beside it as PNG files) and to HTML (figures embedded as base64,
so the page is one file).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

Block = tuple

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid
#ccc;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;
color:#555}.notrun{color:#a00;font-style:italic}"""


def render_markdown(blocks: Sequence[Block], fig_dir: Path, fig_rel: str = "figures") -> str:
    """Markdown text; each figure is written to ``fig_dir/<name>.png`` and linked."""
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.extend(f"- {_md_cell(item)}" for item in b[1])
        elif kind == "table":
            header, rows = b[1], b[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
        elif kind == "fig":
            fig_dir.mkdir(parents=True, exist_ok=True)
            (fig_dir / f"{b[1]}.png").write_bytes(b[2])
            out.append(f"![{b[3]}]({fig_rel}/{b[1]}.png)\n\n*{b[3]}*")
        out.append("")
    return "\n".join(out)


def _md_cell(c: object) -> str:
    """A table cell on one line: pipes escaped, line breaks as spaces."""
    return " ".join(str(c).replace("|", "\\|").split("\n"))


def render_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained HTML page (inline CSS, figures as base64 PNG data URIs)."""
    esc = html.escape
    body = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{esc(b[1])}</{kind}>")
        elif kind == "p":
            cls = ' class="notrun"' if b[1].startswith("*Not run") else ""
            body.append(f"<p{cls}>{esc(b[1].strip('*') if cls else b[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(h))}</th>" for h in b[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in b[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "fig":
            data = base64.b64encode(b[2]).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(b[3])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(b[3])}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display here; must precede pyplot's import
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def bars_paper_vs_ours(
    labels: Sequence[str],
    paper: Sequence[float | None],
    ours: Sequence[float | None],
    title: str,
    errors: Sequence[tuple[float, float] | None] | None = None,
    ref_line: float | None = 1.0,
) -> bytes:
    """Grouped bars: the paper's value beside ours for each label (None: no bar)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(labels), 3.2))
    x = range(len(labels))
    pv = [v if v is not None else math.nan for v in paper]
    ov = [v if v is not None else math.nan for v in ours]
    ax.bar([i - 0.2 for i in x], pv, width=0.4, label="paper", color="#9bb7d4")
    yerr = None
    if errors:
        yerr = [
            [(o - e[0]) if e and _finite(o) else 0 for o, e in zip(ov, errors, strict=True)],
            [(e[1] - o) if e and _finite(o) else 0 for o, e in zip(ov, errors, strict=True)],
        ]
    ax.bar([i + 0.2 for i in x], ov, width=0.4, label="ours", color="#e3906a", yerr=yerr, capsize=4)
    if ref_line is not None:
        ax.axhline(ref_line, color="#555", lw=0.8, ls="--")
    ax.set_xticks(list(x), labels, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def _finite(v) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def line_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    band: tuple[float, float, str] | None = None,
    ref_line: float | None = None,
    logy: bool = False,
) -> bytes:
    """Lines ``{label: (xs, ys)}``, with an optional shaded band (low, high, label)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    if band:
        ax.axhspan(band[0], band[1], color="#9bb7d4", alpha=0.4, label=band[2])
    if ref_line is not None:
        ax.axhline(ref_line, color="#555", lw=0.8, ls="--")
    for label, (xs, ys) in series.items():
        ys = [math.nan if y is None else y for y in ys]
        ax.plot(list(xs), ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
    if all(float(x).is_integer() for xs, _ in series.values() for x in xs):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _png(fig)
