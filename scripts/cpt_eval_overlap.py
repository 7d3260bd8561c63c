"""Where each eval item's law article sits in a recipe run's CPT data: in the CPT training
text, only in the CPT validation split (never trained on), or in neither.

    python scripts/cpt_eval_overlap.py runs/full_repro [--limit 150]

The CPT blocks are decoded back to text and searched for up to four 20-character pieces of
each article (pieces, not the whole article: packing cuts documents at block boundaries).
Items of law_recall and scenario_article are matched through their article (cluster id); a
match in a withheld set is a shared phrase, not a leak, and is reported as found. Prints JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from transformers import AutoTokenizer

SETS = ("law_recall", "scenario_article", "law_withheld", "insurance_zh")


def decoded_text(tok: AutoTokenizer, pattern: str) -> str:
    """Every block of the parquet files under ``pattern``, decoded and concatenated."""
    parts = []
    for f in sorted(glob.glob(pattern, recursive=True)):
        for ids in pq.read_table(f, columns=["input_ids"]).column("input_ids").to_pylist():
            parts.append(tok.decode(ids))
    return "".join(parts)


def where(article: str, train: str, val: str) -> str:
    """'train', 'validation' (only there) or 'neither'."""
    probes = [article[i : i + 20] for i in range(0, max(1, len(article) - 19), 20)][:4]
    if any(p in train for p in probes):
        return "train"
    return "validation" if any(p in val for p in probes) else "neither"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="The recipe's output_dir (runs/full_repro).")
    ap.add_argument("--limit", type=int, default=150, help="Items per set (the eval's qa_limit).")
    args = ap.parse_args()
    m = json.loads((args.run / "data_cpt" / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(m["tokenizer_path"])
    train = decoded_text(tok, f"{args.run}/data_cpt/train/**/*.parquet")
    val = decoded_text(tok, f"{args.run}/data_cpt/validation/domain/*.parquet")
    sets = args.run / "data_sft" / "eval_sets"
    arts = {}
    for line in (sets / "law_recall.jsonl").read_text().splitlines():
        it = json.loads(line)
        arts[it["cluster"]] = it["answer"]
    out = {}
    for s in SETS:
        lines = (sets / f"{s}.jsonl").read_text().splitlines()[: args.limit]
        items = [json.loads(x) for x in lines]
        c = Counter(where(arts.get(it["cluster"], it["answer"]), train, val) for it in items)
        out[s] = {
            "items": len(items),
            "article_in_cpt_train": c["train"],
            "only_in_cpt_validation": c["validation"],
            "in_neither": c["neither"],
        }
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
