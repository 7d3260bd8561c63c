"""Measure every speculative candidate (method x draft x k) against the target, choose one.

One engine per configuration, started one after the other on the same prompts: the target
alone (decode steps at batch 1 and at the served batch, verification costs v(k)), each
separate draft alone (its step cost c), then target + candidate for every k. Per candidate:
acceptance from vLLM's counters, c, v_k, the bound E/(k·c + v_k), decode speed-ups at batch
1 and at the served batch (per repetition, paired by repetition index with the target's),
and greedy identity with the target over every generated token. The winner (highest median
batch-1 speed-up among identical candidates) goes to ``spec_decode.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from soaes.config.distill import AcceptanceConfig
from soaes.eval.spec_bound import cost_ratio, paired_ratios, spec_bound, spread
from soaes.eval.spec_steps import eagle3_cost_ratio, run_candidate

log = logging.getLogger(__name__)


def speculative_config(method: str, draft: str, k: int) -> dict[str, Any]:
    """vLLM's ``speculative_config`` for a candidate."""
    return {"method": method, "model": draft, "num_speculative_tokens": k}


def batch_prompts(prompts: list[dict], cfg: AcceptanceConfig) -> dict[int, list[dict]]:
    """Prompts per batch size: the first few alone (single stream), all at the served batch."""
    return {1: prompts[: cfg.single_stream_prompts], cfg.served_batch: prompts}


def c_from_runs(draft_run: dict, target_run: dict) -> dict[int, dict]:
    """``c`` per batch size: the draft engine's decode-step seconds over the target's, paired
    by repetition."""
    out = {}
    for key in (k for k in target_run if k.startswith("batch")):
        d, t = draft_run[key]["step_s"], target_run[key]["step_s"]
        out[int(key[5:])] = spread([cost_ratio(a, b) for a, b in zip(d, t, strict=True)])
    return out


def candidate_row(
    name: str, method: str, draft: str, k: int, run: dict, target: dict, c: dict | None
) -> dict[str, Any]:
    """The summary of one candidate run against the target's (see module docstring)."""
    row: dict[str, Any] = {"name": name, "method": method, "draft": draft, "k": k}
    identical, checked = True, 0
    for b, toks in target["tokens"].items():  # every repetition's outputs are the same too
        identical &= run["tokens"][b] == toks and run[f"batch{b}"].get("outputs_stable", True)
        checked += sum(map(len, toks))
    row.update(identical_outputs=identical, tokens_checked=checked)
    row["repetitions"] = len(target[f"batch{next(iter(target['tokens']))}"]["step_s"])
    for b in target["tokens"]:
        key = f"batch{b}"
        acc = run[key]["acceptance"]
        speed = paired_ratios(target[key]["step_s"], run[key]["step_s"])
        c_b = (c or {}).get(b)
        v = target["verify"][key]["v_k"].get(k)
        bound = None
        # a cost sum <= 0 is timing noise (a loaded machine), not a bound: left empty
        if c_b is not None and v is not None and k * c_b["median"] + v["median"] > 0:
            bound = spec_bound(acc["mean_acceptance_length"], k, c_b["median"], v["median"])
        row[key] = {
            "acceptance_rate": acc["acceptance_rate"],
            "mean_acceptance_length": acc["mean_acceptance_length"],
            "per_position": acc["per_position"],
            "c_step": c_b,
            "v_k": v,
            "bound": bound,
            "speedup": spread(speed),
            "speedup_reps": speed,
            "share_of_bound": spread(speed)["median"] / bound if bound else None,
            "step_s": run[key]["step_s_spread"],
        }
    row.update(headline_fields(row, sorted(target["tokens"])))
    return row


def headline_fields(row: dict[str, Any], batches: list[int]) -> dict[str, Any]:
    """The candidate's figures at a glance: batch-1 acceptance, E, c, v_k and bound (medians),
    the offline speed-up at every batch size, and ``speedup_serve_batch1`` (None until the
    single stream is measured through Serve: ``soaes bench spec --serve``)."""
    b1 = row[f"batch{batches[0]}"]
    med = lambda s: s["median"] if s else None  # noqa: E731
    out = {
        "acceptance_rate": b1["acceptance_rate"],
        "mean_acceptance_length": b1["mean_acceptance_length"],
        "c_step": med(b1["c_step"]),
        "v_k": med(b1["v_k"]),
        "bound": b1["bound"],
    }
    for b in batches:
        out[f"speedup_offline_batch{b}"] = row[f"batch{b}"]["speedup"]["median"]
    out["speedup_serve_batch1"] = None
    return out


def measure_candidates(
    target: str,
    candidates: dict[str, tuple[str, str]],
    cfg: AcceptanceConfig,
    prompts: list[dict],
) -> dict[str, Any]:
    """Measure ``{name: (method, draft folder)}`` for every k of ``cfg`` (module docstring).

    Returns:
        ``target`` (its per-step costs), ``drafts`` (each separate draft's), ``candidates``
        (one row per name and k) and ``chosen`` (the winning row's name, method, draft, k).
    """
    per_batch = batch_prompts(prompts, cfg)
    steps = {b: cfg.max_tokens for b in per_batch}
    ks = list(cfg.num_speculative_tokens)
    reps = cfg.repetitions

    def run(model: str, spec: dict | None = None, verify: list[int] | None = None) -> dict:
        return run_candidate(model, cfg.engine, spec, per_batch, steps, reps, verify)

    target_run = run(target, verify=ks)
    draft_runs, costs = {}, {}
    for name, (method, path) in candidates.items():
        if method == "draft_model":  # the draft alone in vLLM, same method as the target
            draft_runs[name] = run(path)
            costs[name] = c_from_runs(draft_runs[name], target_run)
        else:  # a head cannot run without the target: its cost is timed in PyTorch
            costs[name] = {b: eagle3_cost_ratio(target, path, b, reps) for b in per_batch}
    rows = []
    for name, (method, path) in candidates.items():
        for k in ks:
            r = run(target, speculative_config(method, path, k))
            rows.append(candidate_row(name, method, path, k, r, target_run, costs[name]))
            log.info(
                "%s k=%d: %s", name, k, {b: rows[-1][f"batch{b}"]["speedup"] for b in per_batch}
            )
    return {
        "target": target,
        "target_steps": _strip(target_run),
        "drafts": {n: _strip(r) for n, r in draft_runs.items()},
        "c_step": costs,
        "candidates": rows,
        "chosen": choose(rows),
    }


def other_prompts_acceptance(
    target: str,
    candidates: dict[str, tuple[str, str]],
    cfg: AcceptanceConfig,
    k: int,
    prompts: list[dict],
) -> dict[str, dict[str, Any]]:
    """Acceptance of every candidate at ``k`` on other prompts (e.g. general ones: does
    general traffic collapse it?), one repetition at the served batch; no timing."""
    out = {}
    for name, (method, path) in candidates.items():
        r = run_candidate(
            target,
            cfg.engine,
            speculative_config(method, path, k),
            {cfg.served_batch: prompts},
            {cfg.served_batch: cfg.max_tokens},
            1,
        )
        acc = r[f"batch{cfg.served_batch}"]["acceptance"]
        out[name] = {
            "k": k,
            "prompts": len(prompts),
            "acceptance_rate": acc["acceptance_rate"],
            "mean_acceptance_length": acc["mean_acceptance_length"],
            "per_position": acc["per_position"],
        }
        log.info("%s k=%d on other prompts: %s", name, k, out[name])
    return out


def _strip(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "tokens"}


def choose(rows: list[dict]) -> dict[str, Any] | None:
    """The identical-output candidate with the highest median batch-1 decode speed-up."""
    ok = [r for r in rows if r["identical_outputs"]]
    if not ok:
        return None
    best = max(ok, key=lambda r: r["batch1"]["speedup"]["median"])
    return {
        "name": best["name"],
        "method": best["method"],
        "draft": best["draft"],
        "k": best["k"],
        "speedup_batch1": best["batch1"]["speedup"]["median"],
        "beats_target": best["batch1"]["speedup"]["median"] > 1.0,
    }


def spec_decode_body(result: dict[str, Any]) -> dict[str, Any]:
    """The ``spec_decode.json`` of a :func:`measure_candidates` result (the Serve app's input)."""
    chosen = result["chosen"]
    if chosen is None:
        raise ValueError("no candidate kept the target's greedy outputs: nothing to serve")
    row = next(
        r for r in result["candidates"] if r["name"] == chosen["name"] and r["k"] == chosen["k"]
    )
    return {
        "num_speculative_tokens": chosen["k"],
        "method": chosen["method"],
        "draft": chosen["draft"],
        "speculative_config": speculative_config(chosen["method"], chosen["draft"], chosen["k"]),
        "target": result["target"],
        "acceptance_rate": row["batch1"]["acceptance_rate"],
        "mean_acceptance_length": row["batch1"]["mean_acceptance_length"],
        "speedup_measured": chosen["speedup_batch1"],
        "chosen": chosen,
    }


def candidates_of(run_dir: Path, undistilled: bool = True, eagle3: bool = True) -> dict:
    """``{name: (vLLM method, folder)}`` of the candidates a distillation run folder holds:
    ``draft_init/`` (undistilled), ``hf/`` (distilled), ``eagle3/`` (EAGLE-3 head)."""
    run_dir, found = Path(run_dir).resolve(), {}
    if undistilled and (run_dir / "draft_init" / "config.json").is_file():
        found["undistilled"] = ("draft_model", str(run_dir / "draft_init"))
    if (run_dir / "hf" / "config.json").is_file():
        found["distilled"] = ("draft_model", str(run_dir / "hf"))
    if eagle3 and (run_dir / "eagle3" / "config.json").is_file():
        found["eagle3"] = ("eagle3", str(run_dir / "eagle3"))
    return found


def token_prompts(target: str, cfg: AcceptanceConfig) -> list[dict]:
    """The held-out prompts of ``cfg`` as vLLM token prompts (chat template applied)."""
    from transformers import AutoTokenizer

    from soaes.data.prompts import load_prompts

    tok = AutoTokenizer.from_pretrained(target)
    texts = load_prompts(cfg.prompts, tok)
    return [{"prompt_token_ids": tok(t, add_special_tokens=False).input_ids} for t in texts]


def legacy_summary(result: dict[str, Any], name: str, cfg: AcceptanceConfig) -> dict[str, Any]:
    """One candidate's rows in the ``acceptance_<name>.json`` shape the report reads (batch-1
    figures: the single stream served)."""
    rows = [r for r in result["candidates"] if r["name"] == name]
    legacy = [
        {
            "k": r["k"],
            "acceptance_rate": r["batch1"]["acceptance_rate"],
            "mean_acceptance_length": r["batch1"]["mean_acceptance_length"],
            "per_position": r["batch1"]["per_position"],
            "speedup_measured": r["batch1"]["speedup"]["median"],
            "speedup_theoretical": r["batch1"]["bound"],
            "outputs_identical": r["identical_outputs"],
        }
        for r in rows
    ]
    best = max(legacy, key=lambda r: r["speedup_measured"])
    c = rows[0]["batch1"]["c_step"]
    return {
        "target": result["target"],
        "draft": rows[0]["draft"],
        "method": rows[0]["method"],
        "num_prompts": cfg.prompts.num_prompts,
        "max_tokens": cfg.max_tokens,
        "c": c["median"] if c else None,
        "best_k": best["k"],
        "rows": legacy,
    }


def measure_run(
    target: str, candidates: dict[str, tuple[str, str]], cfg: AcceptanceConfig, out_dir: Path
) -> dict[str, Any]:
    """Measure the candidates and write ``acceptance.json`` (everything), one
    ``acceptance_<name>.json`` per candidate and ``spec_decode.json`` (the winner) to
    ``out_dir``."""
    result = measure_candidates(target, candidates, cfg, token_prompts(target, cfg))
    legacy = {name: legacy_summary(result, name, cfg) for name in candidates}
    for name, body in legacy.items():
        write_json(Path(out_dir) / f"acceptance_{name}.json", body)
    chosen = result["chosen"]
    write_json(
        Path(out_dir) / "acceptance.json",
        {"drafts": legacy, "served": chosen["name"] if chosen else None, **result},
    )
    if chosen:
        write_json(Path(out_dir) / "spec_decode.json", spec_decode_body(result))
    return result


def write_json(path: str | Path, body: dict[str, Any]) -> Path:
    """Write ``body`` as indented JSON atomically (temp file, then rename)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path
