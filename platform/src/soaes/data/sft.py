"""``data_sft``: per-stage, chat-template-rendered, assistant-only-labelled SFT datasets.

Steps: build conversations per stage and source (built-in builders of ``dialogs.py`` or
user jsonl, one Ray task per builder / file) -> render with the tokenizer's chat template
and label (``map_batches``) -> intermediate parquet -> driver plan over metadata (exact
dedup within a stage, caps, split by source document, test decontamination, weights) ->
write every shard (``groupby("out").map_groups``) -> ``qa.jsonl``, quarantine, manifest.

Output contract (consumed by the SFT trainer and the domain eval; keep it stable):

- ``<output_dir>/<stage>/{train,validation,test}/part-NNNNN.parquet``: columns ``input_ids``
  (list<int32>), ``labels`` (list<int32>: the token id on assistant reply tokens and their
  end-of-turn token, -100 on every other token), ``source`` (str), ``example_id`` (str; an
  upsampled train example repeats its id). Every split folder holds at least one file
  (possibly with zero rows).
- ``<output_dir>/<stage>/test/qa.jsonl``: ``{"question", "answer", "source", "example_id"}``
  per test example: the first user turn and the reference first assistant reply. No test
  question or answer occurs as a turn of any train example of any stage.
- ``<output_dir>/eval_sets/{law_recall,law_withheld,scenario_article,insurance_zh}.jsonl``
  and ``eval_sets/manifest.json``: the sized, leak-free domain eval sets of ``eval_sets.py``
  (their documents are reserved to the test split before planning).
- ``<output_dir>/quarantine/quarantine.jsonl``: malformed records with their reason.
- ``<output_dir>/manifest.json``: ``stages`` (ordered ``{name, epochs, counts: {split:
  {examples, tokens, label_tokens, by_source}}}``), ``sources`` (per stage and source:
  docs_in, quarantined / filtered by reason, exact_dups, docs_out, per split counts),
  ``quarantine`` (records, by_reason), ``eval_sets`` (per set n_items, n_clusters, ...), tokenizer, eos/pad ids, config_hash, ``files``.
- ``<output_dir>/config.resolved.yaml``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray

import soaes.telemetry as prom
from soaes.config.data import DataSFTConfig
from soaes.config.loader import config_hash, save_resolved
from soaes.data.context import WORK_ROWS_PER_FILE, data_context, read_work, reset_outputs
from soaes.data.eval_sets import reserved_groups, select_eval_sets, write_eval_sets
from soaes.data.manifest import (
    check_balance,
    format_table,
    outcome_counts,
    outcome_totals,
    write_json,
    write_jsonl,
)
from soaes.data.read import PREVIEW_CHARS
from soaes.data.sft_plan import SPLITS, SFTPlan, plan_sft, train_turn_keys
from soaes.data.sft_rows import builtin_examples, jsonl_examples, render_rows
from soaes.data.shards import attach_entries, ordered, sha256_file, write_table
from soaes.data.tokenize import resolve_tokenizer, special_ids
from soaes.ray_env import connect

log = logging.getLogger(__name__)
SFT_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("source", pa.string()),
        ("example_id", pa.string()),
    ]
)
META_COLUMNS = [
    "uid",
    "stage",
    "source",
    "group_hash",
    "status",
    "reason",
    "content_hash",
    "q_hash",
    "a_hash",
    "turn_hashes",
    "n_tokens",
]


def example_datasets(cfg: DataSFTConfig) -> list:
    """One Ray dataset of example rows per (stage, source)."""
    out = []
    for stage in cfg.stages:
        for src in stage.sources:
            if src.name == "jsonl":
                ds = ray.data.read_binary_files(src.path, include_paths=True).flat_map(
                    jsonl_examples,
                    fn_kwargs={
                        "stage": stage.name,
                        "source": src.label,
                        "max_bytes": 64 * cfg.max_len,
                    },
                )
            else:
                ds = ray.data.from_items([{"source": src.name}]).flat_map(
                    builtin_examples,
                    fn_kwargs={
                        "stage": stage.name,
                        "source": src.name,
                        "cap": src.max_examples,
                        "seed": cfg.seed,
                        "opts": {"laws": src.laws, "withheld": cfg.withheld_laws, "seed": cfg.seed},
                    },
                )
            out.append(ds)
    return out


def write_sft_group(group: pa.Table, output_dir: str) -> pa.Table:
    """``map_groups``: write one shard; test shards also return their QA items in order."""
    group = ordered(group)
    out = group.column("out")[0].as_py()
    stats = write_table(
        group.select(SFT_SCHEMA.names).cast(SFT_SCHEMA), Path(output_dir) / f"{out}.parquet"
    )
    labels = group.column("labels").combine_chunks()
    lab = labels.values.to_numpy()
    stats.update(
        tokens=len(group.column("input_ids").combine_chunks().values),
        label_tokens=int((lab != -100).sum()),
    )
    qa = []
    if out.split("/")[-2] == "test":
        qa = [
            {
                "question": r["question"],
                "answer": r["answer"],
                "source": r["source"],
                "example_id": r["example_id"],
            }
            for r in group.select(["question", "answer", "source", "example_id"]).to_pylist()
        ]
    return pa.table(
        {
            "out": [out],
            **{k: [v] for k, v in stats.items()},
            "qa": [json.dumps(qa, ensure_ascii=False)],
        }
    )


def write_outputs(cfg: DataSFTConfig, work: Path, plan: SFTPlan, out: Path) -> list[dict]:
    """Ray: route examples (and train copies) to shards, write them in parallel; qa.jsonl."""
    cols = ["input_ids", "labels", "source", "example_id", "question", "answer"]
    ds = read_work(work, ["uid", *cols]).map_batches(
        attach_entries,
        batch_format="pyarrow",
        fn_kwargs={
            "uid": plan.entry_uid,
            "rank": plan.entry_rank,
            "out": plan.entry_out,
            "names": plan.out_names,
            "columns": cols,
        },
    )
    stats = (
        ds.groupby("out")
        .map_groups(write_sft_group, batch_format="pyarrow", fn_kwargs={"output_dir": str(out)})
        .take_all()
    )
    stats = sorted(stats, key=lambda r: r["out"])
    for stage in cfg.stages:
        for split in SPLITS:
            if not any(s["out"].startswith(f"{stage.name}/{split}/") for s in stats):
                empty = SFT_SCHEMA.empty_table()
                st = write_table(empty, out / stage.name / split / "part-00000.parquet")
                stats.append(
                    {
                        "out": f"{stage.name}/{split}/part-00000",
                        **st,
                        "tokens": 0,
                        "label_tokens": 0,
                        "qa": "[]",
                    }
                )
        qa = [
            q
            for s in stats
            if s["out"].startswith(f"{stage.name}/test/")
            for q in json.loads(s["qa"])
        ]
        write_jsonl(out / stage.name / "test" / "qa.jsonl", qa)
    return [
        {
            "path": f"{s['out']}.parquet",
            **{k: s[k] for k in ("rows", "tokens", "label_tokens", "bytes", "sha256")},
        }
        for s in sorted(stats, key=lambda r: r["out"])
    ]


def prepare_examples(cfg: DataSFTConfig, tokenizer: str, work: Path) -> None:
    """Ray: build, render, label and hash every example into the work table."""
    parts = example_datasets(cfg)
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    ds = ds.repartition(target_num_rows_per_block=500)  # spread rendering over the CPUs
    ds.map_batches(
        render_rows,
        batch_format="pyarrow",
        batch_size=None,
        fn_kwargs={"tokenizer": tokenizer, "max_len": cfg.max_len},
    ).write_parquet(str(work), min_rows_per_file=WORK_ROWS_PER_FILE)


def read_meta(work: Path) -> dict:
    """Driver: per-example metadata (no tokens, no text)."""
    t = pq.read_table(work, columns=META_COLUMNS)
    meta = {
        c: t.column(c).to_numpy(zero_copy_only=False) for c in META_COLUMNS if c != "turn_hashes"
    }
    col = t.column("turn_hashes").combine_chunks()
    offsets, values = col.offsets.to_numpy(), col.values.to_numpy()
    meta["turn_hashes"] = [values[offsets[i] : offsets[i + 1]] for i in range(len(col))]
    return meta


def stage_counts(
    cfg: DataSFTConfig, meta: dict, plan: SFTPlan, files: list[dict]
) -> tuple[list, dict]:
    """Manifest ``stages`` (ordered) and per stage/source accounting."""
    stages, sources = [], {}
    for st in cfg.stages:
        in_stage = meta["stage"] == st.name
        labels = [s.label for s in st.sources]
        counts = outcome_counts(meta["source"][in_stage], plan.outcome[in_stage], labels)
        for label in labels:
            mine = in_stage & (meta["source"] == label)
            counts[label].update({sp: int((mine & (plan.split == sp)).sum()) for sp in SPLITS})
            counts[label]["train_copies"] = int(plan.copies[mine & (plan.split == "train")].sum())
        check_balance(counts)
        sources[st.name] = counts
        split_counts = {}
        for sp in SPLITS:
            sel = in_stage & (plan.split == sp)
            fs = [f for f in files if f["path"].startswith(f"{st.name}/{sp}/")]
            split_counts[sp] = {
                "examples": int(plan.copies[sel].sum()),
                "tokens": sum(f["tokens"] for f in fs),
                "label_tokens": sum(f["label_tokens"] for f in fs),
                "by_source": {
                    lb: int(plan.copies[sel & (meta["source"] == lb)].sum()) for lb in labels
                },
            }
        stages.append(
            {"name": st.name, "epochs": st.epochs, "path": st.name, "counts": split_counts}
        )
    return stages, sources


def write_quarantine(work: Path, out: Path) -> dict:
    """Driver: quarantined records -> ``quarantine/quarantine.jsonl`` and counts by reason."""
    t = pq.read_table(
        work,
        columns=["stage", "source", "example_id", "reason", "detail"],
        filters=[("status", "=", "quarantined")],
    )
    rows = t.to_pylist()
    for r in rows:
        r["detail"] = r["detail"][: 2 * PREVIEW_CHARS]
    path = out / "quarantine" / "quarantine.jsonl"
    write_jsonl(path, rows)
    return {
        "path": "quarantine/quarantine.jsonl",
        "records": len(rows),
        "by_reason": dict(Counter(r["reason"] for r in rows)),
        "sha256": sha256_file(path),
    }


def print_summary(manifest: dict) -> None:
    """Per stage and source: accounting and split sizes."""
    rows = []
    for stage, counts in manifest["sources"].items():
        for label, c in counts.items():
            rows.append(
                {
                    "stage": stage,
                    "source": label,
                    "docs_in": c["docs_in"],
                    "quarantined": sum(c["quarantined"].values()),
                    "filtered": sum(c["filtered"].values()),
                    "exact_dups": c["exact_dups"],
                    "docs_out": c["docs_out"],
                    "train": c["train"],
                    "train_copies": c["train_copies"],
                    "validation": c["validation"],
                    "test": c["test"],
                }
            )
    print(
        format_table(
            rows,
            [
                "stage",
                "source",
                "docs_in",
                "quarantined",
                "filtered",
                "exact_dups",
                "docs_out",
                "train",
                "train_copies",
                "validation",
                "test",
            ],
        )
    )


def run_sft_data(cfg: DataSFTConfig) -> dict:
    """Run the ``data_sft`` pipeline (see the module docstring); returns a summary dict."""
    out = Path(cfg.output_dir).expanduser()
    reset_outputs(
        out, [s.name for s in cfg.stages] + ["quarantine", "eval_sets", "_work", "manifest.json"]
    )
    save_resolved(cfg, out)
    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    with data_context(cfg.shuffle, preserve_order=False):
        manifest = _run(cfg, out)
    totals = outcome_totals(c for stage in manifest["sources"].values() for c in stage.values())
    prom.try_publish(prom.count_records, cfg.name, "data_sft", totals)
    print_summary(manifest)
    return {
        "output_dir": str(out),
        "manifest": str(out / "manifest.json"),
        "stages": [
            {"name": s["name"], **{sp: s["counts"][sp]["examples"] for sp in SPLITS}}
            for s in manifest["stages"]
        ],
        "quarantined": manifest["quarantine"]["records"],
        "timings_s": manifest["timings_s"],
    }


def _stage_specs(cfg: DataSFTConfig) -> list[dict]:
    """The curriculum as the planner reads it: each stage's sources, weights and caps."""
    return [
        {
            "name": st.name,
            "sources": [
                {"label": s.label, "weight": s.weight, "max_examples": s.max_examples}
                for s in st.sources
            ],
        }
        for st in cfg.stages
    ]


def _run(cfg: DataSFTConfig, out: Path) -> dict:
    t0 = time.perf_counter()
    tokenizer = resolve_tokenizer(cfg.tokenizer)
    eos, pad = special_ids(tokenizer)
    work = out / "_work" / "examples"
    prepare_examples(cfg, tokenizer, work)
    t_prepare = time.perf_counter() - t0
    meta = read_meta(work)
    t = time.perf_counter()
    candidates = select_eval_sets(cfg)
    plan = plan_sft(
        meta,
        _stage_specs(cfg),
        cfg.seed,
        cfg.validation_fraction,
        cfg.test_fraction,
        cfg.rows_per_shard,
        test_groups=reserved_groups(candidates),
    )
    train_keys = train_turn_keys(plan.split, plan.outcome == "out", meta["turn_hashes"])
    eval_sets = write_eval_sets(out / "eval_sets", candidates, train_keys, cfg)
    t_eval = time.perf_counter() - t
    files = write_outputs(cfg, work, plan, out)
    quarantine = write_quarantine(work, out)
    stage_list, sources = stage_counts(cfg, meta, plan, files)
    if not cfg.keep_work:
        shutil.rmtree(out / "_work", ignore_errors=True)
    timings = {
        "build_render": round(t_prepare, 2),
        "plan_eval_sets": round(t_eval, 2),
        "total": round(time.perf_counter() - t0, 2),
    }
    manifest = {
        "kind": cfg.kind,
        "name": cfg.name,
        "config_hash": config_hash(cfg),
        "tokenizer": cfg.tokenizer,
        "tokenizer_path": tokenizer,
        "eos_id": eos,
        "pad_id": pad,
        "max_len": cfg.max_len,
        "label_ignore_index": -100,
        "stages": stage_list,
        "sources": sources,
        "quarantine": quarantine,
        "eval_sets": eval_sets,
        "files": files,
        "timings_s": timings,
    }
    write_json(out / "manifest.json", manifest)
    return manifest
