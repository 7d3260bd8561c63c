"""``soaes bench data``: Ray Data tokenize+pack throughput vs the bare fast tokenizer; memory.

In one run, on the same real text (laws, People's Daily, Shakespeare/Milton, fortunes,
cycled until the target token count):

1. Bare: the fast tokenizer (the exact encode call the pipeline uses) on every text, in
   this one process: tokens/s. The pipeline's goal is >= 0.5 x (bare rate x cores used).
2. The ``data_cpt`` pipeline on a tiny corpus (about 1k documents), after a warm-up run:
   what a small job costs on a warm cluster.
3. The pipeline (read jsonl shards, clean, tokenise, plan, pack, write; dedup off so that
   this measures tokenise+pack) at half and at the full size: wall time, raw rate, the
   marginal rate and fixed per-run overhead fitted through the two sizes
   (``wall = fixed + tokens / marginal``), and peak memory (PSS summed over the driver and
   every Ray process) while it runs: flat memory means the peak does not grow with the corpus.
4. The same two sizes with exact + near dedup on (the full pipeline), for reference.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import psutil

from soaes.data.manifest import format_table


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's command line."""
    p = argparse.ArgumentParser(prog="soaes bench data", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=5_000_000, help="tokens of the full corpus")
    p.add_argument("--tokenizer", default="smollm2/base", help="tokenizer handle or folder")
    p.add_argument("--num-cpus", type=int, default=4, help="embedded Ray's logical CPUs")
    p.add_argument("--shards", type=int, default=16, help="jsonl files the corpus is written as")
    p.add_argument("--no-dedup-runs", action="store_true", help="skip step 4")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    return p.parse_args(argv)


def corpus_texts():
    """Real documents of every built-in text source, cycled forever."""
    from soaes.assets.texts import TEXT_SOURCES

    def once():
        for name in ("laws", "peoples_daily", "shakespeare", "fortunes_zh"):
            for _, text in TEXT_SOURCES[name]():
                yield text

    return itertools.chain.from_iterable(once() for _ in itertools.count())


def bare_tokenize(tokenizer: str, target: int, batch: int = 1000) -> tuple[list[str], int, float]:
    """Tokenise real texts in this process until ``target`` tokens: (texts, tokens, seconds)."""
    from soaes.data.tokenize import encode_texts

    source, texts, tokens, spent = corpus_texts(), [], 0, 0.0
    encode_texts(tokenizer, ["warm up"])
    while tokens < target:
        chunk = list(itertools.islice(source, batch))
        t = time.perf_counter()
        ids = encode_texts(tokenizer, chunk)
        spent += time.perf_counter() - t
        texts += chunk
        tokens += sum(len(x) for x in ids)
    return texts, tokens, spent


def write_shards(texts: list[str], folder: Path, shards: int) -> Path:
    """The corpus as ``shards`` jsonl files (what a user source looks like)."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with open(folder / f"part-{s:03d}.jsonl", "w", encoding="utf-8") as f:
            for text in texts[s::shards]:
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return folder


class PeakMemory:
    """Samples the summed PSS of this process and all its descendants (Ray's raylet, object
    store and workers of an embedded cluster) in a background thread; keeps the peak."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def __enter__(self) -> PeakMemory:
        def loop():
            while not self._stop.wait(self.interval_s):
                self.peak = max(self.peak, self._sample())

        self.peak = self._sample()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def run_pipeline(corpus: Path, out: Path, tokenizer: str, dedup: bool) -> dict:
    """One ``data_cpt`` run on a jsonl folder: wall seconds, tokens written, peak memory."""
    from soaes.config.loader import validate_config
    from soaes.data.pipeline import run_cpt_data

    cfg = validate_config(
        {
            "kind": "data_cpt",
            "name": "bench_data",
            "output_dir": str(out),
            "tokenizer": tokenizer,
            "seq_len": 2048,
            "rows_per_shard": 500,
            "validation_fraction": 0,
            "sources": [
                {"name": "corpus", "group": "text", "format": "jsonl", "path": str(corpus)}
            ],
            "mix": {"ratio": {"text": 1}},
            "dedup": {"exact": dedup, "near": dedup},
        }
    )
    with PeakMemory() as mem:
        t = time.perf_counter()
        summary = run_cpt_data(cfg)
        wall = time.perf_counter() - t
    return {
        "wall_s": wall,
        "tokens": summary["train"]["tokens"],
        "peak_mem_mb": mem.peak / 2**20,
        "timings_s": summary["timings_s"],
    }


def main(argv: list[str]) -> int:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    from soaes.data.tokenize import resolve_tokenizer
    from soaes.ray_env import connect

    tokenizer = resolve_tokenizer(args.tokenizer)
    texts, bare_tokens, bare_s = bare_tokenize(tokenizer, args.tokens)
    bare_rate = bare_tokens / bare_s
    cores = os.cpu_count() or 1
    connect(num_cpus=args.num_cpus)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    results = {}
    with tempfile.TemporaryDirectory(prefix="soaes-bench-data-") as tmp:
        root = Path(tmp)
        sizes = {"tiny": texts[:1000], "half": texts[: len(texts) // 2], "full": texts}
        corpora = {k: write_shards(v, root / k, min(args.shards, len(v))) for k, v in sizes.items()}
        run_pipeline(
            corpora["tiny"], root / "warm", tokenizer, False
        )  # workers started, imports warm
        for name in ("tiny", "half", "full"):
            results[name] = run_pipeline(corpora[name], root / f"out-{name}", tokenizer, False)
        if not args.no_dedup_runs:
            for name in ("half", "full"):
                results[f"{name}+dedup"] = run_pipeline(
                    corpora[name], root / f"dd-{name}", tokenizer, True
                )
    report(results, bare_rate, bare_tokens, bare_s, cores, args)
    return 0


def fit(small: dict, big: dict) -> tuple[float, float]:
    """Marginal tokens/s and fixed seconds from two runs of different size.

    ``wall = fixed + tokens / marginal``: the slope between the two runs is the steady-state
    rate, the intercept the per-run overhead (start-up of each Ray Data execution, tokenizer
    loads in fresh workers, the final writes).
    """
    d_tok, d_wall = big["tokens"] - small["tokens"], big["wall_s"] - small["wall_s"]
    if d_tok <= 0 or d_wall <= 0:
        return float("nan"), float("nan")
    marginal = d_tok / d_wall
    return marginal, small["wall_s"] - small["tokens"] / marginal


def report(
    results: dict,
    bare_rate: float,
    bare_tokens: int,
    bare_s: float,
    cores: int,
    args: argparse.Namespace,
) -> None:
    """Print the tables (and write JSON when asked)."""
    fits = {"": fit(results["half"], results["full"])}
    if "full+dedup" in results:
        fits["+dedup"] = fit(results["half+dedup"], results["full+dedup"])
    rows = []
    for name, r in results.items():
        suffix = "+dedup" if name.endswith("+dedup") else ""
        marginal, fixed = fits[suffix]
        rows.append(
            {
                "run": name,
                "tokens": r["tokens"],
                "wall_s": f"{r['wall_s']:.1f}",
                "tok_per_s": f"{r['tokens'] / r['wall_s']:,.0f}",
                "marginal_tok_per_s": "-" if name == "tiny" else f"{marginal:,.0f}",
                "vs_bare_x_cores": "-"
                if name == "tiny"
                else f"{marginal / (bare_rate * cores):.2f}",
                "fixed_s": "-" if name == "tiny" else f"{fixed:.1f}",
                "peak_mem_mb": f"{r['peak_mem_mb']:,.0f}",
            }
        )
        if name != "tiny":
            r["marginal_tok_per_s"], r["fixed_s"] = marginal, fixed
    print(
        f"bare fast tokenizer, 1 process: {bare_tokens:,} tokens in {bare_s:.1f} s = "
        f"{bare_rate:,.0f} tok/s; cores used by Ray: {cores}; goal: marginal >= 0.5 x bare x "
        f"cores = {0.5 * bare_rate * cores:,.0f} tok/s"
    )
    print(
        "marginal = (tokens full - half) / (wall full - half); fixed = the per-run overhead "
        f"that fit leaves (tiny corpus, ~1k docs, warm cluster: {results['tiny']['wall_s']:.1f} s)"
    )
    print(format_table(rows, list(rows[0])))
    full, half = results["full"], results["half"]
    print(
        f"peak memory full/half corpus: {full['peak_mem_mb'] / half['peak_mem_mb']:.2f}x "
        f"(corpus {full['tokens'] / half['tokens']:.2f}x); tokenizer {args.tokenizer}"
    )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"bare_rate": bare_rate, "cores": cores, "runs": results}, indent=2)
        )
