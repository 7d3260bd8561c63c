"""Text normalisation and quality filters: pure functions, one verdict per document.

A verdict is ``(text, status, reason)`` with status ``ok``, ``filtered`` (a quality rule
dropped it: counted, not kept) or ``quarantined`` (malformed: counted and written to the
quarantine output with its reason).
"""

from __future__ import annotations

import re
import unicodedata

OK, FILTERED, QUARANTINED = "ok", "filtered", "quarantined"
DUPLICATE = "duplicate"  # status of an exact repeat found before the driver (SFT builders)

# C0/C1 controls (except \n and \t, handled below) and format characters such as zero-width
# spaces and BOMs: they carry no text and break tokenisation and dedup.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff]"
)
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_TRAILING = re.compile(r" +\n")
_BLANKS = re.compile(r"\n{3,}")
# Letters and digits of the scripts this platform targets: Latin and CJK (Han, kana, Hangul).
_SCRIPT = re.compile(
    r"[0-9A-Za-z\u00c0-\u024f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFC, control/format characters removed, runs of spaces collapsed, blank lines capped.

    Full-width spaces (U+3000) become ASCII spaces: NFC keeps them, but they are layout, not
    content, and would make otherwise equal documents differ for dedup.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


def script_ratio(text: str) -> float:
    """Share of non-whitespace characters that are Latin/CJK letters or digits (0 if empty)."""
    visible = len(_WS.sub("", text))
    if not visible:
        return 0.0
    return len(_SCRIPT.findall(text)) / visible


def classify(
    text: str, min_chars: int, max_chars: int, min_script_ratio: float
) -> tuple[str, str, str]:
    """Normalise ``text`` and decide whether it is kept.

    Args:
        text: raw document text (already decoded).
        min_chars: shorter normalised documents are filtered (``too_short``).
        max_chars: longer documents are quarantined (``oversize``): a document this long is
            almost always a broken record (a whole file on one line, a binary blob).
        min_script_ratio: documents with a lower :func:`script_ratio` are filtered
            (``low_script_ratio``: tables of numbers, markup, mojibake).

    Returns:
        ``(normalised text, status, reason)``; reason is ``""`` when status is ``ok``.
    """
    if len(text) > max_chars:
        return text, QUARANTINED, "oversize"
    clean = normalize_text(text)
    if len(clean) < max(min_chars, 1):
        return clean, FILTERED, "too_short"
    if script_ratio(clean) < min_script_ratio:
        return clean, FILTERED, "low_script_ratio"
    return clean, OK, ""


def dedup_key_text(text: str) -> str:
    """The text that near-dedup shingles: lower-cased, whitespace removed.

    Removing whitespace makes re-wrapped copies of a paragraph identical, and is harmless for
    Chinese, which has no spaces between words.
    """
    return _WS.sub("", text.lower())
