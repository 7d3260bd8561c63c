"""End to end ``data_cpt`` on real corpora, with planted duplicates and a corrupted file.

One pipeline run (module fixture) on the embedded Ray session; each test checks one promise
against the written files, recomputing what it can independently of the pipeline.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soaes.assets.fetch import require
from soaes.assets.texts import iter_laws, iter_peoples_daily, law_articles
from soaes.config.loader import load_config, validate_config
from soaes.data.clean import normalize_text
from soaes.data.pack import unpack_documents
from soaes.data.pipeline import run_cpt_data
from soaes.data.tokenize import encode_texts, resolve_tokenizer

pytestmark = pytest.mark.heavy
N_LAWS, N_PD, SEQ_LEN = 500, 900, 128
MAX_CHARS = 100_000
ROOT = Path(__file__).resolve().parents[2]
# The shipped withheld list: 中华人民共和国个人信息保护法 lies within the first N_LAWS articles.
WITHHELD = load_config(ROOT / "pipelines" / "data_cpt_tiny.yaml").withheld_laws


def _corrupted_lines(fresh: list[str]) -> tuple[bytes, dict, dict]:
    lines = [
        json.dumps({"text": fresh[0]}, ensure_ascii=False).encode(),
        b'{"text": "unterminated',  # bad_json
        b'{"text": "\xff\xfe broken bytes"}',  # invalid_utf8
        b"",  # empty_record
        b"   \t ",  # empty_record
        json.dumps({"text": "x" * (4 * MAX_CHARS + 10)}).encode(),  # oversize, never decoded
        json.dumps(
            {"text": "长" * (MAX_CHARS + 5)}, ensure_ascii=False
        ).encode(),  # oversize after decode
        json.dumps({"body": fresh[1]}, ensure_ascii=False).encode(),  # missing_field
        b"[1, 2, 3]",  # bad_json (not an object)
        json.dumps({"text": "短"}, ensure_ascii=False).encode(),  # filtered: too_short
        json.dumps({"text": "!!!! #### $$$$ %%%% ^^^^ &&&& ****"}).encode(),  # low_script_ratio
        json.dumps({"text": fresh[1]}, ensure_ascii=False).encode() + b"\r",
    ]
    quarantined = {
        "bad_json": 2,
        "invalid_utf8": 1,
        "empty_record": 2,
        "oversize": 2,
        "missing_field": 1,
    }
    filtered = {"too_short": 1, "low_script_ratio": 1}
    return b"\n".join(lines), quarantined, filtered  # no final newline on purpose


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ray_session, tiny_paths):
    root = tmp_path_factory.mktemp("cpt")
    laws = [t for _, t in itertools.islice(iter_laws(withheld=WITHHELD), N_LAWS)]
    pd_tail = [
        t for _, t in itertools.islice(iter_peoples_daily(), N_PD + 200, N_PD + 400) if len(t) > 60
    ]
    long_laws = [t for t in laws if len(t) > 120]
    exact = long_laws[:3]
    near = [t[:60] + ("乙" if t[60] != "乙" else "丙") + t[61:] for t in long_laws[3:6]]
    distinct = pd_tail[:5]
    internal = pd_tail[5]
    planted = [*exact, *near, internal, internal, *distinct]
    (root / "planted.jsonl").write_text(
        "".join(
            json.dumps({"text": t, "id": f"p{i}"}, ensure_ascii=False) + "\n"
            for i, t in enumerate(planted)
        ),
        encoding="utf-8",
    )
    body, quarantined, filtered = _corrupted_lines(pd_tail[10:12])
    (root / "corrupted.jsonl").write_bytes(body)
    extra = pd_tail[20:40]
    pq.write_table(pa.table({"content": [*extra, None]}), root / "extra.parquet")
    cfg = validate_config(
        {
            "kind": "data_cpt",
            "name": "test_cpt",
            "output_dir": str(root / "out"),
            "tokenizer": str(tiny_paths["tokenizer"]),
            "seq_len": SEQ_LEN,
            "rows_per_shard": 300,
            "sources": [
                {"name": "laws", "group": "domain", "max_docs": N_LAWS},
                {"name": "peoples_daily", "group": "general", "max_docs": N_PD},
                {
                    "name": "planted",
                    "group": "domain",
                    "format": "jsonl",
                    "path": str(root / "planted.jsonl"),
                    "id_field": "id",
                },
                {
                    "name": "corrupted",
                    "group": "domain",
                    "format": "jsonl",
                    "path": str(root / "corrupted.jsonl"),
                },
                {
                    "name": "extra",
                    "group": "general",
                    "format": "parquet",
                    "path": str(root / "extra.parquet"),
                    "text_field": "content",
                },
                {
                    "name": "law_tail",
                    "group": "domain",
                    "format": "sqlite",
                    "path": str(require("laws") / "laws.db"),
                    "sql": "SELECT id, law_name || article_no || ' ' || article_text AS text FROM articles "
                    "WHERE status = '现行有效' AND id > 25000 ORDER BY id LIMIT 30",
                    "id_field": "id",
                },
            ],
            "mix": {"ratio": {"domain": 1, "general": 1}, "seed": 3},
            "withheld_laws": WITHHELD,
            "dedup": {"num_perm": 64, "bands": 16},
            "validation_fraction": 0.05,
        }
    )
    summary = run_cpt_data(cfg)
    out = Path(cfg.output_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    tok = resolve_tokenizer(str(tiny_paths["tokenizer"]))
    domain_texts = laws + planted + pd_tail[10:12] + _law_tail_texts()
    return {
        "out": out,
        "manifest": manifest,
        "summary": summary,
        "tok": tok,
        "cfg": cfg,
        "quarantined": quarantined,
        "filtered": filtered,
        "exact": exact,
        "near": near,
        "distinct": distinct,
        "internal": internal,
        "domain": _token_set(tok, domain_texts),
        "withheld": _token_set(tok, _withheld_docs()),
    }


def _withheld_docs() -> list[str]:
    """The documents the laws source would make of the withheld articles (all of them)."""
    return [f"{law}{no or ''}　{text or ''}".strip() for _, law, no, text in law_articles(WITHHELD)]


def _law_tail_texts() -> list[str]:
    con = sqlite3.connect(f"file:{require('laws') / 'laws.db'}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT law_name || article_no || ' ' || article_text FROM articles "
        "WHERE status = '现行有效' AND id > 25000 ORDER BY id LIMIT 30"
    ).fetchall()
    con.close()
    return [r[0] for r in rows]


def _token_set(tok: str, texts: list[str]) -> set[tuple]:
    return {tuple(ids) for ids in encode_texts(tok, [normalize_text(t) for t in texts])}


def _unpack(out: Path, pattern: str, eos: int) -> tuple[list[np.ndarray], int]:
    docs, tokens = [], 0
    for f in sorted(out.glob(pattern)):
        t = pq.read_table(f)
        ids = [np.asarray(r, dtype=np.int32) for r in t.column("input_ids").to_pylist()]
        n_pad = t.column("n_pad").to_numpy()
        assert all(len(r) == SEQ_LEN for r in ids)
        tokens += sum(len(r) for r in ids) - int(n_pad.sum())
        docs += unpack_documents(ids, n_pad, eos)
    return docs, tokens


def test_counts_add_up_per_source(corpus):
    m = corpus["manifest"]
    for name, c in m["sources"].items():
        rest = (
            c["docs_out"]
            + sum(c["filtered"].values())
            + sum(c["quarantined"].values())
            + c["exact_dups"]
            + c["near_dups"]
        )
        assert rest == c["docs_in"], name
    assert (
        m["sources"]["laws"]["docs_in"] == N_LAWS
        and m["sources"]["peoples_daily"]["docs_in"] == N_PD
    )
    assert m["sources"]["extra"]["quarantined"] == {"missing_field": 1}
    assert m["sources"]["law_tail"]["docs_in"] == 30


def test_corrupted_file_is_quarantined_with_exact_counts(corpus):
    c = corpus["manifest"]["sources"]["corrupted"]
    assert c["docs_in"] == 12 and c["quarantined"] == corpus["quarantined"]
    assert c["filtered"] == corpus["filtered"] and c["docs_out"] == 2
    records = [
        json.loads(x)
        for x in (corpus["out"] / "quarantine" / "quarantine.jsonl").read_text().splitlines()
    ]
    mine = [r for r in records if r["source"] == "corrupted"]
    got: dict = {}
    for r in mine:
        got[r["reason"]] = got.get(r["reason"], 0) + 1
        assert len(r["preview"]) <= 1000
    assert got == corpus["quarantined"]
    assert len(records) == corpus["manifest"]["quarantine"]["records"]


def test_planted_duplicates_removed_and_distinct_documents_kept(corpus):
    c = corpus["manifest"]["sources"]["planted"]
    assert c["exact_dups"] == 4 and c["near_dups"] == 3  # 3 copies of law docs + 1 internal repeat
    eos = corpus["manifest"]["eos_id"]
    train, _ = _unpack(corpus["out"], "train/*.parquet", eos)
    val, _ = _unpack(corpus["out"], "validation/*/*.parquet", eos)
    written = [tuple(d.tolist()) for d in train + val]
    tok = corpus["tok"]
    for text in [*corpus["exact"], *corpus["distinct"], corpus["internal"]]:
        (ids,) = _token_set(tok, [text])
        assert written.count(ids) == 1, text[:30]  # the domain group is used exactly once
    for text in corpus["near"]:
        (ids,) = _token_set(tok, [text])
        assert ids not in written


def test_packing_is_lossless_and_ratio_is_within_two_percent(corpus):
    m, out = corpus["manifest"], corpus["out"]
    train, tokens = _unpack(out, "train/*.parquet", m["eos_id"])
    assert tokens == m["train"]["tokens"] == sum(s["tokens_out"] for s in m["sources"].values())
    assert len(train) == sum(s["train_copies"] for s in m["sources"].values())
    domain = corpus["domain"]
    dom = sum(len(d) + 1 for d in train if tuple(d.tolist()) in domain)
    share = dom / tokens
    assert abs(share / 0.5 - 1) < 0.02, share
    assert abs(m["groups"]["domain"]["achieved_share"] - share) < 1e-6
    assert m["ratio"]["max_relative_error"] < 0.02


def test_validation_per_group_is_held_out(corpus):
    m, out = corpus["manifest"], corpus["out"]
    assert {p.name for p in (out / "validation").iterdir()} == {"domain", "general"}
    train = {tuple(d.tolist()) for d in _unpack(out, "train/*.parquet", m["eos_id"])[0]}
    for g in ("domain", "general"):
        val, _ = _unpack(out, f"validation/{g}/*.parquet", m["eos_id"])
        assert val and not train & {tuple(d.tolist()) for d in val}
        assert all((tuple(d.tolist()) in corpus["domain"]) == (g == "domain") for d in val)


def test_manifest_files_and_position_ids(corpus):
    import hashlib

    m, out = corpus["manifest"], corpus["out"]
    assert m["seq_len"] == SEQ_LEN and m["pad_id"] == 0 and m["eos_id"] == 2
    for f in m["files"]:
        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    t = pq.read_table(out / m["files"][0]["path"])
    assert t.schema.field("input_ids").type == pa.list_(pa.int32())
    assert t.schema.field("n_pad").type == pa.int32()
    ids, pos = t.column("input_ids").to_pylist()[0], t.column("position_ids").to_pylist()[0]
    assert pos[0] == 0
    for i in range(1, SEQ_LEN):  # restart right after every EOS, else count up
        assert pos[i] == (0 if ids[i - 1] == m["eos_id"] else pos[i - 1] + 1)
    assert (out / "config.resolved.yaml").is_file() and not (out / "_work").exists()


def test_withheld_laws_reach_no_split(corpus):
    m, out = corpus["manifest"], corpus["out"]
    first = [text for _, text in itertools.islice(iter_laws(), N_LAWS)]
    assert sum(t.startswith(tuple(WITHHELD)) for t in first) > 20  # they would be in this slice
    docs, _ = _unpack(out, "train/*.parquet", m["eos_id"])
    docs += _unpack(out, "validation/*/*.parquet", m["eos_id"])[0]
    assert len(docs) > 500 and len(corpus["withheld"]) > 200
    assert not {tuple(d.tolist()) for d in docs} & corpus["withheld"]
