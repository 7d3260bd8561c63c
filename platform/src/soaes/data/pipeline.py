"""``data_cpt``: raw corpora -> cleaned, deduplicated, ratio-mixed, packed CPT token shards.

Steps (Ray Data unless noted): read every source (quarantining malformed records) ->
normalise/filter, content hash, MinHash bands, tokenise (``map_batches``) -> intermediate
parquet -> LSH/exact-hash grouping across all sources (``groupby``), verification and
union-find (driver) -> validation hold-out, token-ratio mixing and shard layout (driver,
over per-document metadata only) -> pack and write each shard (``groupby("out")
.map_groups``) -> quarantine records and manifest.

Output contract (consumed by the CPT trainer and the eval; keep it stable):

- ``<output_dir>/train/part-NNNNN.parquet``: packed blocks, columns ``input_ids``
  (list<int32>, length ``seq_len``), ``position_ids`` (list<int32>; with
  ``reset_position_ids`` they restart at 0 at each row start, after each EOS (each document
  start) and at the pad tail; else ``0..seq_len-1``), ``n_pad`` (int32: trailing pad
  tokens of the row, pad id = tokenizer pad id (EOS when it has none); mask them).
  Documents are separated by the tokenizer's EOS id; only a shard's last row has padding, and
  unpacking a shard (drop pads, split after EOS) gives its documents back in order.
- ``<output_dir>/validation/<group>/part-NNNNN.parquet``: same format, one folder per mix
  group, from held-out documents (never in train) for per-group perplexity.
- ``<output_dir>/quarantine/quarantine.jsonl``: one record per malformed input
  ``{source, doc_id, reason, detail, n_chars, preview}``.
- ``<output_dir>/manifest.json``: ``sources`` (per source: docs_in, quarantined and filtered
  by reason, exact_dups, near_dups, docs_out, docs_train, docs_validation, train_copies,
  tokens_in (tokens of clean documents, before dedup, EOS excluded), tokens_out (train tokens
  written, repeats and EOS included), tokens_validation), ``groups`` (target and achieved
  token share, budget, available tokens), ``seq_len``, ``tokenizer``, ``eos_id``,
  ``pad_id``, ``config_hash``, ``files`` (path, split, rows, tokens, sha256, ...).
  ``docs_in = docs_out + filtered + exact_dups + near_dups + quarantined`` per source;
  documents dropped by downsampling are ``filtered.mix_downsampled``.
- ``<output_dir>/config.resolved.yaml`` (``save_resolved``).
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray

import soaes.telemetry as prom
from soaes.config.data import DataCPTConfig
from soaes.config.loader import config_hash, save_resolved
from soaes.data import dedup
from soaes.data.context import WORK_ROWS_PER_FILE, data_context, read_work, reset_outputs
from soaes.data.manifest import (
    check_balance,
    format_table,
    outcome_counts,
    outcome_totals,
    source_rows,
    write_json,
    write_jsonl,
)
from soaes.data.plan import CorpusPlan, plan_corpus
from soaes.data.prepare import prepare_batch
from soaes.data.read import read_source
from soaes.data.shards import attach_entries, pack_group, sha256_file
from soaes.data.tokenize import resolve_tokenizer, special_ids
from soaes.ray_env import connect

log = logging.getLogger(__name__)
META_COLUMNS = ["uid", "source", "group", "status", "reason", "n_tokens", "content_hash"]


def prepare_corpus(cfg: DataCPTConfig, tokenizer: str, work: Path) -> None:
    """Ray: read all sources, clean, hash, sign, tokenise; write the per-document work table."""
    sources = [read_source(s, cfg.clean.max_chars, cfg.withheld_laws) for s in cfg.sources]
    ds = sources[0].union(*sources[1:]) if len(sources) > 1 else sources[0]
    near = (
        {
            "num_perm": cfg.dedup.num_perm,
            "bands": cfg.dedup.bands,
            "shingle_chars": cfg.dedup.shingle_chars,
        }
        if cfg.dedup.near
        else None
    )
    clean = cfg.clean.model_dump()
    # Readers emit a file (or a whole built-in corpus) per task: re-block so that cleaning and
    # tokenising spread over every CPU.
    ds = ds.repartition(target_num_rows_per_block=cfg.docs_per_block)
    ds = ds.map_batches(
        prepare_batch,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"clean": clean, "near": near, "tokenizer": tokenizer},
    )
    ds.write_parquet(str(work), min_rows_per_file=WORK_ROWS_PER_FILE)


def read_meta(work: Path) -> dict[str, np.ndarray]:
    """Driver: the small per-document columns of the work table (no text, no tokens)."""
    t = pq.read_table(work, columns=META_COLUMNS)
    meta = {c: t.column(c).to_numpy(zero_copy_only=False) for c in META_COLUMNS}
    uniq, counts = np.unique(meta["uid"], return_counts=True)
    if (counts > 1).any():
        clash = sorted(set(meta["source"][np.isin(meta["uid"], uniq[counts > 1])].tolist()))
        raise ValueError(f"sources {clash}: document ids are not unique (check id_field)")
    return meta


def find_duplicates(cfg: DataCPTConfig, work: Path, meta: dict) -> dict[int, str]:
    """Ray grouping of candidates, then verification and union-find: ``{uid: kind}``."""
    if not (cfg.dedup.exact or cfg.dedup.near):
        return {}
    ds = read_work(work, ["uid", "status", "bands", "content_hash"])
    # Partitions of the key shuffle: enough for every CPU, each at most ~2M (key, uid) rows.
    rows = int((meta["status"] == "ok").sum()) * (cfg.dedup.bands + 1)
    partitions = max(2 * int(ray.cluster_resources().get("CPU", 1)), rows // 2_000_000 + 1)
    pairs = dedup.candidate_pairs(ds, exact=cfg.dedup.exact, partitions=partitions)
    chash = dict(zip(meta["uid"].tolist(), meta["content_hash"].tolist(), strict=True))
    same = np.array([chash[a] == chash[b] for a, b in pairs.tolist()], dtype=bool)
    verified = [tuple(p) for p in pairs[same].tolist()]
    near = pairs[~same]
    if cfg.dedup.near and near.size:
        want = np.unique(near).tolist()
        t = pq.read_table(work, columns=["uid", "sig"], filters=[("uid", "in", want)])
        sig = dict(
            zip(
                t.column("uid").to_pylist(),
                t.column("sig").to_numpy(zero_copy_only=False),
                strict=True,
            )
        )
        verified += [
            (a, b)
            for a, b in near.tolist()
            if dedup.jaccard_estimate(sig[a], sig[b]) >= cfg.dedup.threshold
        ]
    rank = {s.name: i for i, s in enumerate(cfg.sources)}
    source = dict(zip(meta["uid"].tolist(), meta["source"].tolist(), strict=True))
    removed = dedup.resolve_clusters(
        verified, {u: (rank[source[u]], u) for p in verified for u in p}
    )
    return {u: "exact_dup" if chash[u] == chash[k] else "near_dup" for u, k in removed.items()}


def pack_outputs(
    cfg: DataCPTConfig, work: Path, plan: CorpusPlan, out: Path, eos: int, pad: int
) -> list[dict]:
    """Ray: route every planned copy to its shard, pack and write each shard in parallel."""
    ds = read_work(work, ["uid", "input_ids"])
    ds = ds.map_batches(
        attach_entries,
        batch_format="pyarrow",
        fn_kwargs={
            "uid": plan.entry_uid,
            "rank": plan.entry_rank,
            "out": plan.entry_out,
            "names": plan.out_names,
            "columns": ["input_ids"],
        },
    )
    stats = (
        ds.groupby("out")
        .map_groups(
            pack_group,
            batch_format="pyarrow",
            fn_kwargs={
                "output_dir": str(out),
                "seq_len": cfg.seq_len,
                "eos_id": eos,
                "pad_id": pad,
                "reset_position_ids": cfg.reset_position_ids,
            },
        )
        .take_all()
    )
    files = []
    for s in sorted(stats, key=lambda r: r["out"]):
        split, _, rest = s["out"].partition("/")
        group = rest.rsplit("/", 1)[0] if split == "validation" else None
        files.append(
            {
                "path": f"{s['out']}.parquet",
                "split": split,
                "group": group,
                **{k: s[k] for k in ("rows", "docs", "tokens", "pad", "bytes", "sha256")},
            }
        )
    return files


def write_quarantine(work: Path, out: Path) -> dict:
    """Driver: quarantined records (with bounded previews) -> ``quarantine/quarantine.jsonl``."""
    cols = ["source", "doc_id", "reason", "detail", "n_chars", "preview"]
    t = pq.read_table(work, columns=cols, filters=[("status", "=", "quarantined")])
    path = out / "quarantine" / "quarantine.jsonl"
    write_jsonl(path, t.to_pylist())
    return {
        "path": "quarantine/quarantine.jsonl",
        "records": t.num_rows,
        "sha256": sha256_file(path),
    }


def source_counts(cfg: DataCPTConfig, meta: dict, plan: CorpusPlan) -> dict[str, dict]:
    """Per-source accounting: outcomes plus documents and tokens in and out."""
    counts = outcome_counts(meta["source"], plan.outcome, [s.name for s in cfg.sources])
    ok = meta["status"] == "ok"
    tokens = meta["n_tokens"].astype(np.int64)
    for s in cfg.sources:
        sel = meta["source"] == s.name
        counts[s.name] = {
            "group": s.group,
            **counts[s.name],
            "docs_train": int((sel & (plan.copies > 0)).sum()),
            "docs_validation": int((sel & plan.validation).sum()),
            "train_copies": int(plan.copies[sel].sum()),
            "tokens_in": int(tokens[sel & ok].sum()),
            "tokens_out": int(((tokens + 1) * plan.copies)[sel].sum()),
            "tokens_validation": int((tokens + 1)[sel & plan.validation].sum()),
        }
    check_balance(counts)
    return counts


def build_manifest(
    cfg: DataCPTConfig,
    tokenizer: str,
    eos: int,
    pad: int,
    counts: dict,
    plan: CorpusPlan,
    files: list[dict],
    quarantine: dict,
    timings: dict,
) -> dict:
    """The manifest body (see the module docstring)."""
    mix = plan.mix
    groups = {
        g: {
            "target_share": round(mix.target_share[g], 6),
            "achieved_share": round(mix.achieved_share[g], 6),
            "budget_tokens": mix.budgets[g],
            "available_tokens": mix.available[g],
            "train_tokens": mix.achieved[g],
            "validation_tokens": sum(f["tokens"] for f in files if f["group"] == g),
        }
        for g in cfg.mix.ratio
    }
    train = [f for f in files if f["split"] == "train"]
    return {
        "kind": cfg.kind,
        "name": cfg.name,
        "config_hash": config_hash(cfg),
        "tokenizer": cfg.tokenizer,
        "tokenizer_path": tokenizer,
        "eos_id": eos,
        "pad_id": pad,
        "seq_len": cfg.seq_len,
        "reset_position_ids": cfg.reset_position_ids,
        "ratio": {
            "target": dict(cfg.mix.ratio),
            "max_relative_error": round(mix.max_relative_error(), 6),
        },
        "groups": groups,
        "sources": counts,
        "train": {
            "rows": sum(f["rows"] for f in train),
            "tokens": sum(f["tokens"] for f in train),
            "pad_tokens": sum(f["pad"] for f in train),
            "files": len(train),
        },
        "files": files,
        "quarantine": quarantine,
        "timings_s": timings,
    }


def print_summary(manifest: dict) -> None:
    """The end-of-run table: per source accounting, then per group shares."""
    rows = source_rows(manifest["sources"])
    cols = [
        "source",
        "group",
        "docs_in",
        "quarantined",
        "filtered",
        "exact_dups",
        "near_dups",
        "docs_out",
        "docs_train",
        "docs_validation",
        "tokens_in",
        "tokens_out",
    ]
    print(format_table(rows, cols))
    grows = [{"group": g, **v} for g, v in manifest["groups"].items()]
    print(
        format_table(
            grows,
            [
                "group",
                "target_share",
                "achieved_share",
                "available_tokens",
                "train_tokens",
                "validation_tokens",
            ],
        )
    )


def run_cpt_data(cfg: DataCPTConfig) -> dict:
    """Run the ``data_cpt`` pipeline (see the module docstring); returns a summary dict."""
    out = Path(cfg.output_dir).expanduser()
    reset_outputs(out, ["train", "validation", "quarantine", "_work", "manifest.json"])
    save_resolved(cfg, out)
    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    limited = any(s.max_docs and s.format != "builtin" for s in cfg.sources)
    with data_context(cfg.shuffle, preserve_order=limited):
        manifest = _run(cfg, out)
    totals = outcome_totals(manifest["sources"].values())
    prom.try_publish(prom.count_records, cfg.name, "data_cpt", totals)
    print_summary(manifest)
    return {
        "output_dir": str(out),
        "manifest": str(out / "manifest.json"),
        "train": manifest["train"],
        "groups": manifest["groups"],
        "ratio_max_relative_error": manifest["ratio"]["max_relative_error"],
        "quarantined": manifest["quarantine"]["records"],
        "timings_s": manifest["timings_s"],
    }


def _run(cfg: DataCPTConfig, out: Path) -> dict:
    t0 = time.perf_counter()
    tokenizer = resolve_tokenizer(cfg.tokenizer)
    eos, pad = special_ids(tokenizer)
    work, timings = out / "_work" / "docs", {}
    clock = functools.partial(_lap, timings)
    prepare_corpus(cfg, tokenizer, work)
    clock("read_clean_tokenize", t0)
    meta = read_meta(work)
    t = time.perf_counter()
    dup_kind = find_duplicates(cfg, work, meta)
    clock("dedup", t)
    t = time.perf_counter()
    plan = plan_corpus(
        meta,
        dup_kind,
        cfg.mix.ratio,
        cfg.mix.total_tokens,
        cfg.mix.seed,
        cfg.validation_fraction,
        cfg.rows_per_shard * cfg.seq_len,
    )
    clock("plan", t)
    t = time.perf_counter()
    files = pack_outputs(cfg, work, plan, out, eos, pad)
    clock("pack_write", t)
    quarantine = write_quarantine(work, out)
    counts = source_counts(cfg, meta, plan)
    if not cfg.keep_work:
        shutil.rmtree(out / "_work", ignore_errors=True)
    clock("total", t0)
    manifest = build_manifest(cfg, tokenizer, eos, pad, counts, plan, files, quarantine, timings)
    write_json(out / "manifest.json", manifest)
    return manifest


def _lap(timings: dict, name: str, since: float) -> None:
    timings[name] = round(time.perf_counter() - since, 2)
    log.info("data_cpt: %s done in %.1f s", name, timings[name])
