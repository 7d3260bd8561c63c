"""The ``eval`` pipeline's measurements: every model on the Q&A sets, MMLU and perplexity.

Each model is evaluated in its own Ray task (``max_calls=1``: the worker process exits
afterwards, so vLLM's engine and the transformers weights are freed before the next model).
Inside the task: one vLLM engine answers every Q&A set, then one transformers copy of the
model scores MMLU options and perplexity. :mod:`soaes.report.pipeline` runs this and turns
the per-item results into the typed results and the report. A model whose checkpoint files, items and
settings are unchanged since its last evaluation in the same output folder is not evaluated
again (``reuse_results``), so a failed multi-model run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from soaes.config.eval import EvalConfig, EvalModelConfig
from soaes.eval.qa import write_json, write_jsonl

log = logging.getLogger(__name__)

CACHE_FILE = "result_full.json"
RESULT_FORMAT = 2  # bump when a model's result dict changes shape: old caches are not reused


def load_qa_sets(cfg: EvalConfig) -> dict[str, dict]:
    """Every configured Q&A set as ``{name: {"items", "malformed", "source"}}``."""
    from soaes.eval.qa import laws_qa_sample, load_qa

    sets = {}
    for q in cfg.qa:
        if q.builtin == "laws_articles":
            sets[q.name] = {
                "items": laws_qa_sample(q.limit, q.seed),
                "malformed": [],
                "source": "builtin:laws_articles",
            }
            continue
        if not Path(q.path).is_file():
            raise FileNotFoundError(f"qa[{q.name}].path: file not found: {q.path}")
        items, bad = load_qa(q.path, limit=q.limit)
        if not items:
            raise ValueError(f"qa[{q.name}].path: no valid question/answer lines in {q.path}")
        for b in bad:
            log.warning("%s:%d: skipped: %s", q.path, b["line"], b["reason"])
        sets[q.name] = {"items": items, "malformed": bad, "source": q.path}
    return sets


def load_ppl_sets(cfg: EvalConfig) -> dict[str, dict]:
    """Every perplexity set as ``{name: {"group", "texts" | "blocks"}}`` (fixed, held out)."""
    from soaes.eval.retention import heldout_texts, validation_blocks

    out = {}
    for p in cfg.perplexity:
        if p.validation_dir:
            out[p.name] = {
                "group": p.group,
                "blocks": validation_blocks(p.validation_dir, p.max_docs, p.ids_column),
            }
        else:
            out[p.name] = {"group": p.group, "texts": heldout_texts(p.source, p.max_docs)}
    return out


def _qa_part(m: EvalModelConfig, cfg: EvalConfig, qa_sets: dict, out: Path) -> dict:
    """One vLLM engine answers every set; each set is scored and written on its own."""
    from soaes.eval.qa import generate_answers

    if not qa_sets or "qa" not in m.tasks:
        return {}
    questions = [it["question"] for s in qa_sets.values() for it in s["items"]]
    g = cfg.generation
    t0 = time.perf_counter()
    gens = generate_answers(
        m.path,
        questions,
        max_new_tokens=g.max_new_tokens,
        tokenizer=m.tokenizer,
        system_prompt=g.system_prompt,
        engine=g.engine,
    )
    seconds = time.perf_counter() - t0
    result, start = {}, 0
    for name, s in qa_sets.items():
        part = gens[start : start + len(s["items"])]
        start += len(s["items"])
        result[name] = _score_set(name, s, part, g.max_new_tokens, out)
    tokens = sum(x["output_tokens"] for x in gens)
    log.info("%s: %d answers, %.1f tokens/s", m.name, len(gens), tokens / seconds)
    return result


def _score_set(name: str, qa_set: dict, gens: list[dict], max_new_tokens: int, out: Path) -> dict:
    """One set's scores, answer diagnostics and compact per-item records (also written)."""
    from soaes.eval.diagnostics import generation_diagnostics
    from soaes.eval.qa import score_items

    per_item, agg = score_items(qa_set["items"], gens)
    write_jsonl(out / "qa" / name / "predictions.jsonl", per_item)
    write_jsonl(out / "qa" / name / "malformed.jsonl", qa_set["malformed"])
    summary = {
        "source": qa_set["source"],
        "scoring": qa_set["items"][0]["scoring"],
        "n_items": len(per_item),
        "n_malformed": len(qa_set["malformed"]),
        "scores": agg,
        "diagnostics": generation_diagnostics(per_item, max_new_tokens),
    }
    write_json(out / "qa" / name / "scores.json", summary)
    keep = ("id", "cluster", "prediction", "finish_reason", "output_tokens", "scores")
    return {**summary, "per_item": [{k: r[k] for k in keep} for r in per_item]}


def _lm_part(
    m: EvalModelConfig, cfg: EvalConfig, mmlu_items: list, ppl_sets: dict, out: Path
) -> tuple[dict | None, dict]:
    """MMLU option log-likelihoods and perplexities with one transformers copy of the model."""
    from soaes.eval.loglik import load_causal_lm
    from soaes.eval.retention import mmlu_summary, perplexity_items, ppl_summary, score_mmlu

    mmlu_items = mmlu_items if "mmlu" in m.tasks else []
    ppl_sets = ppl_sets if "perplexity" in m.tasks else {}
    if not mmlu_items and not ppl_sets:
        return None, {}
    model, tok = load_causal_lm(m.path, m.tokenizer, trust_remote_code=m.trust_remote_code)
    mmlu = None
    if mmlu_items:
        per_item = score_mmlu(model, tok, mmlu_items, cfg.mmlu.scoring, cfg.lm_batch_size)
        write_jsonl(out / "mmlu.jsonl", per_item)
        mmlu = {**mmlu_summary(per_item), "scoring": cfg.mmlu.scoring, "per_item": per_item}
    ppl = {}
    for name, s in ppl_sets.items():
        items = perplexity_items(
            model,
            tok,
            texts=s.get("texts"),
            blocks=s.get("blocks"),
            max_len=cfg.ppl_max_len,
            batch_size=cfg.lm_batch_size,
        )
        write_jsonl(out / "ppl" / f"{name}.jsonl", items)
        ppl[name] = {"group": s["group"], **ppl_summary(items), "per_item": items}
    return mmlu, ppl


def model_cache_key(
    m: EvalModelConfig, cfg: EvalConfig, qa_sets: dict, mmlu_items: list, ppl_sets: dict
) -> str:
    """Hash of everything one model's results depend on: its files, the items, the settings.

    A local checkpoint is fingerprinted by file names, sizes and mtimes, so a retrained
    folder at the same path is evaluated again.
    """
    from soaes.models.presets import resolve

    folder = Path(resolve(m.path))
    files = []
    if folder.is_dir():
        files = sorted(
            [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in folder.rglob("*")
            if p.is_file()
        )
    body = {
        "model": m.model_dump(),
        "files": files,
        "qa": {k: s["items"] for k, s in qa_sets.items()},
        "result_format": RESULT_FORMAT,
        "mmlu": [cfg.mmlu.scoring, [r["id"] for r in mmlu_items]],
        "ppl": ppl_sets,
        "generation": cfg.generation.model_dump(),
        "ppl_max_len": cfg.ppl_max_len,
    }
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_model(
    m: EvalModelConfig,
    cfg: EvalConfig,
    qa_sets: dict,
    mmlu_items: list,
    ppl_sets: dict,
    cache_key: str = "",
) -> dict:
    """All of one model's measurements, with per-item data for the paired comparisons.

    Also written in full (per-item data included) to ``models/<name>/result_full.json``
    with ``cache_key``, so an unchanged model is not evaluated again.
    """
    out = Path(cfg.output_dir) / "models" / m.name
    t0 = time.perf_counter()
    _cap_threads()
    qa = _qa_part(m, cfg, qa_sets, out)
    mmlu, ppl = _lm_part(m, cfg, mmlu_items, ppl_sets, out)
    result = {
        "path": m.path,
        "qa": qa,
        "mmlu": mmlu,
        "perplexity": ppl,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "result.json", strip_per_item(result))
    write_json(out / CACHE_FILE, {"cache_key": cache_key, **result})
    return result


def _cap_threads() -> None:
    """At most one torch thread per CPU this process may run on.

    Ray sets a task's OMP_NUM_THREADS to its logical CPUs, which on an embedded cluster
    (2 logical per core) is more threads than cores: spinning OpenMP threads then slow
    every forward pass several times over.

    Calls torch's built-in setter (``torch._C.set_num_threads``): an in-process vLLM CPU
    engine that ran earlier in this worker replaces ``torch.set_num_threads`` with a no-op
    for the rest of the process; the next engine binds its threads again at start-up.
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and torch.get_num_threads() > cores:
        torch._C.set_num_threads(cores)


def strip_per_item(obj: Any) -> Any:
    """A copy without the ``per_item`` lists (summaries only)."""
    if isinstance(obj, dict):
        return {k: strip_per_item(v) for k, v in obj.items() if k != "per_item"}
    return obj


def _cached(cfg: EvalConfig, name: str, key: str) -> dict | None:
    path = Path(cfg.output_dir) / "models" / name / CACHE_FILE
    if not cfg.reuse_results or not path.is_file():
        return None
    body = json.loads(path.read_text(encoding="utf-8"))
    return body if body.pop("cache_key", None) == key else None


def _run_models(
    cfg: EvalConfig, qa_sets: dict, mmlu_items: list, ppl_sets: dict
) -> tuple[dict, list[str]]:
    """Evaluate the models, each in a fresh Ray worker process.

    Every model that is not reused is submitted at once: Ray runs as many side by side as
    ``task_num_cpus``/``task_num_gpus`` fit on the cluster (one per GPU on a GPU node; two
    at a time on a 4-logical-CPU embedded cluster with the default 2 CPUs per task) and
    queues the rest. Each task writes its own results when it finishes, so a failure of one
    model keeps the others' results for the next run.

    Returns:
        Results by model name (in config order), and the names whose earlier results were
        reused.
    """
    import ray

    task = ray.remote(max_calls=1)(evaluate_model).options(
        num_cpus=cfg.task_num_cpus, num_gpus=cfg.task_num_gpus, name="soaes-eval-model"
    )
    refs = {k: ray.put(v) for k, v in (("qa", qa_sets), ("mmlu", mmlu_items), ("ppl", ppl_sets))}
    results, reused, pending = {}, [], {}
    for m in cfg.models:
        key = model_cache_key(m, cfg, qa_sets, mmlu_items, ppl_sets)
        if (hit := _cached(cfg, m.name, key)) is not None:
            log.info("%s: inputs unchanged (key %s), reusing its results", m.name, key)
            results[m.name], reused = hit, [*reused, m.name]
            continue
        log.info("evaluating %s (%s)", m.name, m.path)
        pending[m.name] = task.remote(m, cfg, refs["qa"], refs["mmlu"], refs["ppl"], key)
    names = {ref: name for name, ref in pending.items()}
    waiting = list(pending.values())
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        name = names[done[0]]
        results[name] = ray.get(done[0])
        log.info("%s: evaluated in %.0f s", name, results[name]["seconds"])
    return {m.name: results[m.name] for m in cfg.models}, reused


def evaluate_all(cfg: EvalConfig) -> tuple[dict, list[str], dict]:
    """Load the sets, connect to Ray and evaluate every model (reusing unchanged ones).

    Returns:
        Per-model results (per-item data included), the reused model names, and the Q&A
        sets (their items, for the report's baselines and samples).
    """
    from soaes.config.loader import save_resolved
    from soaes.eval.retention import load_mmlu, stratified_subset
    from soaes.ray_env import connect

    save_resolved(cfg, Path(cfg.output_dir))
    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    qa_sets, ppl_sets = load_qa_sets(cfg), load_ppl_sets(cfg)
    mmlu_items = []
    if cfg.mmlu.enabled:
        mmlu_items = stratified_subset(
            load_mmlu(cfg.mmlu.path), cfg.mmlu.n_per_subject, cfg.mmlu.seed
        )
        log.info(
            "MMLU subset: %d questions (%d per subject)", len(mmlu_items), cfg.mmlu.n_per_subject
        )
    per_model, reused = _run_models(cfg, qa_sets, mmlu_items, ppl_sets)
    return per_model, reused, qa_sets
