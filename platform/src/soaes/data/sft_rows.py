"""Ray Data worker steps of ``data_sft``: build conversations, render, label, hash.

Row flow: a builder (or a user jsonl file) -> one row per example ``(stage, source,
example_id, group_key, messages, status, reason, detail)`` -> :func:`render_rows` adds
``input_ids``, ``labels`` and the hashes the driver needs to split and decontaminate.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from soaes.data.chat import render_batch
from soaes.data.clean import DUPLICATE, FILTERED, OK, QUARANTINED
from soaes.data.dedup import stable_hash64
from soaes.data.dialogs import BUILDERS, Example, messages_from_json
from soaes.data.read import PREVIEW_CHARS, decode_line, parse_json_object, split_lines
from soaes.data.sft_plan import over_cap
from soaes.data.tokenize import list_array, load_tokenizer

_NON_WORD = re.compile(r"[\W_]+")


def example_uid(stage: str, source: str, example_id: str) -> int:
    """The uid of an example (unique per stage and source)."""
    return stable_hash64(f"{stage}\x00{source}\x00{example_id}")


def leak_key(text: str) -> int:
    """Hash of a turn for overlap checks: case, spaces and punctuation ignored."""
    core = _NON_WORD.sub("", text.lower())
    return stable_hash64(core or text)


def _row(stage: str, source: str, ex: Example, status: str = "") -> dict:
    status = status or (QUARANTINED if ex.reason else OK)
    return {
        "stage": stage,
        "source": source,
        "example_id": ex.example_id,
        "group_key": ex.group_key,
        "messages": json.dumps(ex.messages, ensure_ascii=False) if status == OK else "",
        "status": status,
        "reason": ex.reason,
        "detail": ex.detail,
    }


def builtin_examples(
    row: dict, stage: str, source: str, cap: int | None, seed: int, opts: dict | None = None
) -> list[dict]:
    """``flat_map``: every example of a built-in builder; exact repeats marked duplicate,
    well-formed examples past ``cap`` marked filtered.

    The cap keeps the first ``cap`` well-formed examples in seeded source-document order
    (the same rule the driver applies), before rendering, so unused examples cost nothing.
    Examples with a ``finish`` step are completed after the cap (``filtered:no_content``
    when it builds nothing). ``opts`` are the builder's options (see ``dialogs.BUILDERS``).
    """
    examples = list(BUILDERS[source](opts or {}))
    rows = [_row(stage, source, ex) for ex in examples]
    seen: set = set()
    for r in rows:  # exact repeats first, so that the cap counts distinct conversations
        if r["status"] == OK:
            if r["messages"] in seen:
                r.update(status=DUPLICATE, messages="")
            seen.add(r["messages"])
    if cap:
        ok = np.array([r["status"] == OK for r in rows], dtype=bool)
        group = np.array([stable_hash64(ex.group_key) for ex in examples], dtype=np.int64)
        uid = np.array(
            [example_uid(stage, source, ex.example_id) for ex in examples], dtype=np.int64
        )
        for i in np.flatnonzero(over_cap(ok, group, uid, cap, seed)):
            examples[i].reason = "over_max_examples"
            rows[i] = _row(stage, source, examples[i], FILTERED)
    for i, ex in enumerate(examples):
        if ex.finish and rows[i]["status"] == OK:
            ex.messages = ex.finish()
            if not ex.messages:
                ex.reason = "no_content"
            rows[i] = _row(stage, source, ex, OK if ex.messages else FILTERED)
    return rows


def jsonl_examples(row: dict, stage: str, source: str, max_bytes: int) -> list[dict]:
    """``flat_map`` over ``read_binary_files`` rows: ``{"messages": [...]}`` per line."""
    name, out = Path(row["path"]).name, []
    for i, line in enumerate(split_lines(row["bytes"]), start=1):
        eid = f"{name}:{i}"
        text, reason, detail = decode_line(line, max_bytes)
        messages: list = []
        if not reason:
            obj, reason, detail = parse_json_object(text)
            if not reason:
                messages, reason, detail = messages_from_json(obj)
        ex = Example(eid, eid, messages, reason, detail)
        r = _row(stage, source, ex)
        if reason:
            r["detail"] = f"{detail} | {text[:PREVIEW_CHARS]}"
        out.append(r)
    return out


def render_rows(batch: pa.Table, tokenizer: str, max_len: int) -> pa.Table:
    """``map_batches``: render and label well-formed examples; hashes for the driver."""
    cols = batch.to_pydict()
    n, tok = batch.num_rows, load_tokenizer(tokenizer)
    status, reason, detail = list(cols["status"]), list(cols["reason"]), list(cols["detail"])
    ok = [i for i in range(n) if status[i] == OK]
    convs = {i: json.loads(cols["messages"][i]) for i in ok}
    ids: list = [np.empty(0, np.int32)] * n
    labels: list = [np.empty(0, np.int32)] * n
    for i, res in zip(ok, render_batch(tok, [convs[i] for i in ok]), strict=True):
        if isinstance(res, str):
            status[i], reason[i], detail[i] = QUARANTINED, "template_error", res
        elif res[0].size > max_len:
            status[i], reason[i], detail[i] = (
                QUARANTINED,
                "too_long",
                f"{res[0].size} tokens > {max_len}",
            )
        else:
            ids[i], labels[i] = res
    q, a, turns = [""] * n, [""] * n, [np.empty(0, np.int64)] * n
    for i in ok:
        q[i] = next(m["content"] for m in convs[i] if m["role"] == "user")
        a[i] = next(m["content"] for m in convs[i] if m["role"] == "assistant")
        turns[i] = np.array(
            [leak_key(m["content"]) for m in convs[i] if m["role"] != "system"], np.int64
        )
    return pa.table(
        {
            "uid": pa.array(
                [
                    example_uid(s, src, e)
                    for s, src, e in zip(
                        cols["stage"], cols["source"], cols["example_id"], strict=True
                    )
                ],
                pa.int64(),
            ),
            "stage": cols["stage"],
            "source": cols["source"],
            "example_id": cols["example_id"],
            "group_hash": pa.array([stable_hash64(g) for g in cols["group_key"]], pa.int64()),
            "status": status,
            "reason": reason,
            "detail": [d[: 2 * PREVIEW_CHARS] for d in detail],
            "content_hash": pa.array(
                [stable_hash64(m) if m else 0 for m in cols["messages"]], pa.int64()
            ),
            "q_hash": pa.array([leak_key(x) if x else 0 for x in q], pa.int64()),
            "a_hash": pa.array([leak_key(x) if x else 0 for x in a], pa.int64()),
            "turn_hashes": list_array(turns, np.int64),
            "question": q,
            "answer": a,
            "input_ids": list_array(ids, np.int32),
            "labels": list_array(labels, np.int32),
            "n_tokens": np.fromiter((len(x) for x in ids), dtype=np.int64, count=n),
        }
    )
