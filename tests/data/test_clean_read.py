"""Normalisation, filters and record decoding: every bad record gets a reason (pure, no Ray)."""

from __future__ import annotations

import json

from soaes.assets.texts import strip_gutenberg, strip_pos_tags
from soaes.data.clean import classify, normalize_text, script_ratio
from soaes.data.read import parse_record, split_lines

LIMITS = {"min_chars": 5, "max_chars": 50, "min_script_ratio": 0.5}


def test_normalize_nfc_controls_and_whitespace():
    assert normalize_text("Cafe\u0301\x00\u200b  x\t\ty \r\n\n\n\nz ") == "Café x y\n\nz"
    assert normalize_text("全角\u3000空格") == "全角 空格"


def test_classify_reasons():
    assert classify("短", **LIMITS)[1:] == ("filtered", "too_short")
    assert classify("x" * 51, **LIMITS)[1:] == ("quarantined", "oversize")
    assert classify("!!!!!! ##### $$$$$ 1", **LIMITS)[1:] == ("filtered", "low_script_ratio")
    assert classify("第一条 为了规范管理，制定本法。", **LIMITS)[1:] == ("ok", "")
    assert script_ratio("abc，。") == 0.6


def test_parse_record_reasons():
    cases = {
        b"": "empty_record",
        b"   ": "empty_record",
        b"\xff\xfe{": "invalid_utf8",
        b"{not json": "bad_json",
        b"[1, 2]": "bad_json",
        b'{"body": "x"}': "missing_field",
        b'{"text": 3}': "missing_field",
        b"x" * 500: "oversize",
    }
    for line, reason in cases.items():
        assert parse_record(line, "jsonl", "text", None, 400)[2] == reason, line
    text, doc_id, reason, _ = parse_record(
        json.dumps({"text": "正文", "id": 7}).encode(), "jsonl", "text", "id", 400
    )
    assert (text, doc_id, reason) == ("正文", "7", "")
    assert parse_record("纯文本".encode(), "text_lines", "text", None, 400)[:3] == (
        "纯文本",
        None,
        "",
    )


def test_split_lines():
    assert split_lines(b"a\r\nb\n\nc\n") == [b"a", b"b", b"", b"c"]
    assert split_lines(b"a") == [b"a"] and split_lines(b"") == []


def test_builtin_markup_parsers():
    assert strip_pos_tags("迈向/v  充满/v  [中国/ns 政府/n]nt") == "迈向充满中国政府"
    text = "header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert strip_gutenberg(text) == "body"
