"""Ray Data readers: every source becomes rows ``(source, group, key, doc_id, text, reason, detail)``.

``key`` is unique within a source (file + line, file + row, a built-in id, an id column) and
becomes the document's uid; ``reason`` is empty for a well-formed record and names the
problem otherwise (``bad_json``, ``invalid_utf8``, ``empty_record``, ``oversize``,
``missing_field``), in which case ``text`` holds a short preview for the quarantine output.
Raw bytes are read with ``read_binary_files`` and decoded here, so one bad line never fails
a read task: it becomes a counted, quarantined record.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from pathlib import Path

import ray

from soaes.config.data import SourceConfig

PREVIEW_CHARS = 1000


def _row(src: dict, key: str, doc_id: str, text: str, reason: str = "", detail: str = "") -> dict:
    if reason:
        text = text[:PREVIEW_CHARS]
    return {
        "source": src["name"],
        "group": src["group"],
        "key": key,
        "doc_id": doc_id,
        "text": text,
        "reason": reason,
        "detail": detail,
    }


def split_lines(data: bytes) -> list[bytes]:
    r"""Lines of a file's bytes (``\n``, ``\r\n``); a final newline does not open a line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def decode_line(line: bytes, max_bytes: int) -> tuple[str, str, str]:
    """Strict UTF-8 decode of one record: ``(text, reason, detail)``; text is a preview on error."""
    if not line.strip():
        return "", "empty_record", "blank line"
    if len(line) > max_bytes:
        preview = line[:PREVIEW_CHARS].decode("utf-8", errors="replace")
        return preview, "oversize", f"{len(line)} bytes > {max_bytes}"
    try:
        return line.decode("utf-8"), "", ""
    except UnicodeDecodeError as e:
        return line.decode("utf-8", errors="replace"), "invalid_utf8", str(e)


def parse_json_object(text: str) -> tuple[dict | None, str, str]:
    """``(object, "", "")`` or ``(None, "bad_json", detail)`` for a JSON line."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return None, "bad_json", str(e)
    if not isinstance(obj, dict):
        return None, "bad_json", f"expected an object, got {type(obj).__name__}"
    return obj, "", ""


def parse_record(
    line: bytes, fmt: str, text_field: str, id_field: str | None, max_bytes: int
) -> tuple[str, str | None, str, str]:
    """Decode one line (``jsonl`` or ``text_lines``): ``(text, id or None, reason, detail)``."""
    text, reason, detail = decode_line(line, max_bytes)
    if reason or fmt != "jsonl":
        return text, None, reason, detail
    obj, reason, detail = parse_json_object(text)
    if reason:
        return text, None, reason, detail
    value = obj.get(text_field)
    if not isinstance(value, str):
        return text, None, "missing_field", f"{text_field!r} missing or not a string"
    doc_id = str(obj[id_field]) if id_field and id_field in obj else None
    return value, doc_id, "", ""


def file_records(row: dict, src: dict, max_bytes: int) -> list[dict]:
    """``flat_map`` body for ``read_binary_files`` rows of jsonl / text_lines / text_files."""
    path, data = row["path"], row["bytes"]
    name = Path(path).name
    if src["format"] == "text_files":
        text, _, reason, detail = parse_record(data, "text_files", "", None, max_bytes)
        return [_row(src, path, name, text, reason, detail)]
    out = []
    for i, line in enumerate(split_lines(data), start=1):
        text, doc_id, reason, detail = parse_record(
            line, src["format"], src["text_field"], src["id_field"], max_bytes
        )
        out.append(_row(src, f"{path}:{i}", doc_id or f"{name}:{i}", text, reason, detail))
    return out


def parquet_records(row: dict, src: dict) -> list[dict]:
    """``flat_map`` body: one parquet file -> rows keyed by (file, row number)."""
    import pyarrow.parquet as pq

    path = row["path"]
    cols = [src["text_field"]] + ([src["id_field"]] if src["id_field"] else [])
    table = pq.read_table(path, columns=cols)
    texts = table.column(src["text_field"]).to_pylist()
    ids = table.column(src["id_field"]).to_pylist() if src["id_field"] else [None] * len(texts)
    out = []
    for i, (text, doc_id) in enumerate(zip(texts, ids, strict=True)):
        doc_id = str(doc_id) if doc_id is not None else f"{Path(path).name}#{i}"
        if isinstance(text, str):
            out.append(_row(src, f"{path}#{i}", doc_id, text))
        else:
            out.append(
                _row(
                    src,
                    f"{path}#{i}",
                    doc_id,
                    repr(text),
                    "missing_field",
                    f"{src['text_field']!r} is {type(text).__name__}",
                )
            )
    return out


def sql_records(batch: dict, src: dict) -> dict:
    """``map_batches`` body for ``read_sql`` rows: text and id columns -> reader rows."""
    rows = []
    for text, doc_id in zip(batch[src["text_field"]], batch[src["id_field"]], strict=True):
        doc_id = str(doc_id)
        if isinstance(text, str):
            rows.append(_row(src, doc_id, doc_id, text))
        else:
            rows.append(
                _row(
                    src,
                    doc_id,
                    doc_id,
                    repr(text),
                    "missing_field",
                    f"{src['text_field']!r} is {type(text).__name__}",
                )
            )
    return {k: [r[k] for r in rows] for k in _FIELDS}


_FIELDS = ("source", "group", "key", "doc_id", "text", "reason", "detail")


def builtin_records(row: dict, src: dict) -> list[dict]:
    """``flat_map`` body: parse one built-in corpus of shared/DATA.md (see assets/texts.py)."""
    from soaes.assets.texts import TEXT_SOURCES

    if src["name"] == "laws":
        docs = TEXT_SOURCES["laws"](include=src["laws"], withheld=src["withheld"])
    else:
        docs = TEXT_SOURCES[src["name"]]()
    docs = itertools.islice(docs, src["max_docs"]) if src["max_docs"] else docs
    return [_row(src, doc_id, doc_id, text) for doc_id, text in docs]


def _files(path: str, suffix: str | None = None) -> list[str]:
    p = Path(path).expanduser()
    if p.is_file():
        return [str(p)]
    if not p.is_dir():
        raise FileNotFoundError(f"source path not found: {path}")
    files = sorted(str(f) for f in p.rglob(f"*{suffix or ''}") if f.is_file())
    if not files:
        raise FileNotFoundError(f"source path {path}: no {suffix or ''} files")
    return files


def read_source(src: SourceConfig, max_chars: int, withheld_laws: list[str] | tuple = ()):
    """The Ray dataset of one configured source (``max_docs`` applied, in file order).

    ``withheld_laws`` are dropped from the built-in ``laws`` source before ``max_docs``.
    """
    spec = {**src.model_dump(), "withheld": list(withheld_laws)}
    if src.format == "builtin":
        return ray.data.from_items([{"name": src.name}]).flat_map(
            builtin_records, fn_kwargs={"src": spec}
        )
    if src.format == "parquet":
        files = [{"path": f} for f in _files(src.path, ".parquet")]
        ds = ray.data.from_items(files).flat_map(parquet_records, fn_kwargs={"src": spec})
    elif src.format == "sqlite":
        uri = f"file:{Path(src.path).expanduser()}?mode=ro"
        ds = ray.data.read_sql(src.sql, functools.partial(sqlite3.connect, uri, uri=True))
        ds = ds.map_batches(sql_records, batch_format="numpy", fn_kwargs={"src": spec})
    else:
        # UTF-8 needs at most 4 bytes a character: a longer line is oversize without decoding.
        ds = ray.data.read_binary_files(_files(src.path), include_paths=True)
        ds = ds.flat_map(file_records, fn_kwargs={"src": spec, "max_bytes": 4 * max_chars})
    return ds.limit(src.max_docs) if src.max_docs else ds
