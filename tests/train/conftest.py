"""Training-test fixtures: small CPT/SFT datasets in the data pipeline's output format, built
from real text (law articles, People's Daily, chatterbot) with the tiny tokenizer, and the
DeepSpeed op cache.

The format is the contract of ``soaes.data.pipeline`` / ``soaes.data.sft`` (packed blocks with
``input_ids``/``position_ids``/``n_pad``; SFT ``input_ids``/``labels``/``source``/``example_id``
per stage and split), built here directly so the training tests stay small and fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

SEQ_LEN = 128


def _pack(docs: list[list[int]], seq_len: int, pad_id: int) -> list[dict]:
    """Greedy packing with position ids restarting at each document; trailing pads counted."""
    rows, ids, pos = [], [], []
    for doc in docs:
        for i in range(0, len(doc), seq_len):
            piece = doc[i : i + seq_len]
            if len(ids) + len(piece) > seq_len:
                rows.append((ids, pos))
                ids, pos = [], []
            ids += piece
            pos += list(range(len(piece)))
    if ids:
        rows.append((ids, pos))
    out = []
    for ids, pos in rows:
        n_pad = seq_len - len(ids)
        out.append(
            {"input_ids": ids + [pad_id] * n_pad, "position_ids": pos + [0] * n_pad, "n_pad": n_pad}
        )
    return out


def _write(rows: list[dict], folder: Path, schema: pa.Schema, per_file: int = 200) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(rows), per_file):
        table = pa.Table.from_pylist(rows[k : k + per_file], schema=schema)
        pq.write_table(table, folder / f"part-{k // per_file:05d}.parquet")


CPT_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("n_pad", pa.int32()),
    ]
)
SFT_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("source", pa.string()),
        ("example_id", pa.string()),
    ]
)


def build_cpt_data(
    out: Path, tokenizer_dir: str, n_domain: int = 700, n_general: int = 700
) -> Path:
    """Law articles (domain) + People's Daily (general), mixed 1:1 by document, packed."""
    from transformers import AutoTokenizer

    from soaes.data.sources import iter_source_texts

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    groups = {}
    for group, name, n in (("domain", "laws", n_domain), ("general", "peoples_daily", n_general)):
        texts = [t for _, t in zip(range(n), iter_source_texts(name), strict=False)]
        groups[group] = [tok(t)["input_ids"] + [eos] for t in texts]
    n_val = 40
    train_docs = [
        d
        for pair in zip(groups["domain"][n_val:], groups["general"][n_val:], strict=False)
        for d in pair
    ]
    _write(_pack(train_docs, SEQ_LEN, pad), out / "train", CPT_SCHEMA)
    for group, docs in groups.items():
        _write(_pack(docs[:n_val], SEQ_LEN, pad), out / "validation" / group, CPT_SCHEMA)
    manifest = {"eos_id": eos, "pad_id": pad, "seq_len": SEQ_LEN, "tokenizer": tokenizer_dir}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def _sft_example(tok, question: str, answer: str, source: str, ex_id: str) -> dict:
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(msgs, tokenize=False)
    p_ids, f_ids = tok(prompt)["input_ids"], tok(full)["input_ids"]
    labels = [-100] * len(p_ids) + f_ids[len(p_ids) :]
    return {"input_ids": f_ids, "labels": labels, "source": source, "example_id": ex_id}


def _chat_pairs(root: Path) -> list[tuple[str, str]]:
    pairs = []
    for f in sorted(root.glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations", []):
            if len(conv) >= 2 and isinstance(conv[0], str) and isinstance(conv[1], str):
                pairs.append((conv[0], conv[1]))
    return pairs


def build_sft_data(out: Path, tokenizer_dir: str) -> Path:
    """stage1_chat (chatterbot zh dialogues) and stage2_domain (law-article Q&A)."""
    from transformers import AutoTokenizer

    from soaes.assets.fetch import require
    from soaes.data.sources import iter_laws

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    chat = _chat_pairs(require("chatterbot") / "chinese")
    laws = []
    for _, (_, text) in zip(range(500), iter_laws(), strict=False):
        head, _, body = text.partition("　")
        laws.append((f"{head}规定了什么？", body[:200]))
    stages = {"stage1_chat": (chat, "chatterbot_zh"), "stage2_domain": (laws, "laws_qa")}
    for name, (pairs, source) in stages.items():
        rows = [_sft_example(tok, q, a, source, f"{source}:{i}") for i, (q, a) in enumerate(pairs)]
        _write(rows[40:], out / name / "train", SFT_SCHEMA)
        _write(rows[:20], out / name / "validation", SFT_SCHEMA)
        _write(rows[20:40], out / name / "test", SFT_SCHEMA)
    manifest = {
        "stages": [{"name": "stage1_chat", "epochs": 1}, {"name": "stage2_domain", "epochs": 1}],
        "tokenizer": tokenizer_dir,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def ds_ops():
    """DeepSpeed's CPU comm op compiled once into the shared cache (a no-op when cached)."""
    from soaes.train.engine import default_extensions_dir, prebuild_ops

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", default_extensions_dir())
    return prebuild_ops()


@pytest.fixture(scope="session")
def cpt_data(tmp_path_factory, tiny_paths) -> Path:
    """Packed CPT shards in the data pipeline's format (tiny tokenizer, real text)."""
    return build_cpt_data(tmp_path_factory.mktemp("cpt_data"), str(tiny_paths["tokenizer"]))


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory, tiny_paths) -> Path:
    """Two SFT stages in the data pipeline's format (tiny tokenizer, real text)."""
    return build_sft_data(tmp_path_factory.mktemp("sft_data"), str(tiny_paths["tokenizer"]))
