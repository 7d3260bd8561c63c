"""Distillation (pipeline ``distill``): train a draft toward the target's next-token
distributions on Ray Train + DeepSpeed, then measure acceptance with vLLM.

Reads top to bottom like the recipe:

1. build the draft (prune / fresh / pretrained; vocabulary checked) -> ``draft_init/``;
2. distillation data (on-policy vLLM text, CPT/SFT rows; offline teacher scores) -> ``data/``;
3. Ray Train + DeepSpeed: the same worker steps as CPT/SFT (:mod:`soaes.train.worker`,
   :func:`soaes.train.loop.train_steps`) with :func:`distill_loss` as the loss. The teacher
   is either *online* (a frozen copy of the target on every worker) or *offline* (its
   stored top-k log-probs come with each batch) -> ``checkpoints/``, ``hf/`` (the draft);
4. optionally an EAGLE-3 head trained on the same rows (:mod:`soaes.train.eagle3`) ->
   ``eagle3/``;
5. per-step vLLM measurement of every candidate (undistilled and distilled draft, EAGLE-3
   head) at every k on held-out prompts (:mod:`soaes.eval.spec_choice`) ->
   ``acceptance.json`` and ``spec_decode.json`` (the method, draft and k served).

The held-out metric (``heldout/loss``) is the forward KL(target || draft), over the same
top-k buckets as training when a top-k is configured, whatever the training objective.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from soaes.config.distill import DistillConfig, LossConfig
from soaes.config.loader import config_hash, save_resolved
from soaes.models.presets import resolve
from soaes.train.data import IGNORE_INDEX, count_rows, parquet_dataset
from soaes.train.plan import RunInfo, RunPlan, TeacherPlan

log = logging.getLogger(__name__)

DISTILL_COLUMNS = ["input_ids", "loss_mask"]
TEACHER_COLUMNS = ["teacher_logprobs", "teacher_indices"]


def collate_distill(
    rows: dict[str, np.ndarray], pad_id: int, pad_to_multiple: int = 8, top_k: int = 0
) -> dict[str, Any]:
    """Distillation rows -> right-padded ``input_ids``, ``attention_mask``, ``labels`` and,
    for an offline teacher, ``teacher_logprobs`` / ``teacher_indices`` ``[B, T, k]``.

    ``labels`` follow the HF convention (``labels[t+1]`` is scored by the logits at t) so the
    shared loop counts loss tokens as for SFT: ``labels[t+1] = input_ids[t+1]`` where
    ``loss_mask[t]``, else -100.
    """
    import torch

    seqs = [np.asarray(x, dtype=np.int64) for x in rows["input_ids"]]
    width = -(-max(len(s) for s in seqs) // pad_to_multiple) * pad_to_multiple
    b = len(seqs)
    ids = np.full((b, width), pad_id, dtype=np.int64)
    attn = np.zeros((b, width), dtype=np.int64)
    labels = np.full((b, width), IGNORE_INDEX, dtype=np.int64)
    t_lp = np.zeros((b, width, max(top_k, 1)), dtype=np.float32)
    t_ix = np.zeros((b, width, max(top_k, 1)), dtype=np.int64)
    for i, s in enumerate(seqs):
        n, mask = len(s), np.asarray(rows["loss_mask"][i], dtype=bool)
        ids[i, :n], attn[i, :n] = s, 1
        labels[i, 1:n][mask[: n - 1]] = s[1:][mask[: n - 1]]
        if top_k:
            t_lp[i, :n] = np.asarray(rows["teacher_logprobs"][i], dtype=np.float32).reshape(
                n, top_k
            )
            t_ix[i, :n] = np.asarray(rows["teacher_indices"][i], dtype=np.int64).reshape(n, top_k)
    out = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(attn),
        "labels": torch.from_numpy(labels),
    }
    if top_k:
        out["teacher_logprobs"], out["teacher_indices"] = (
            torch.from_numpy(t_lp),
            torch.from_numpy(t_ix),
        )
    return out


def distill_loss(engine: Any, batch: dict[str, Any], teacher: Any, loss: LossConfig) -> Any:
    """The student's distillation loss on one batch (``loss_fn`` of the shared loop).

    Only the positions that count are compared (``labels[:, 1:] != -100``), which keeps the
    ``[positions, vocab]`` tensors small. In eval mode it returns the held-out forward KL.
    """
    import torch

    from soaes.train.losses import distillation_loss

    dev = engine.device
    ids, attn = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
    labels = batch["labels"][:, 1:].to(dev)
    mask = labels != IGNORE_INDEX
    student = engine(input_ids=ids, attention_mask=attn).logits[:, :-1][mask]
    indices = None
    if teacher is not None:
        with torch.no_grad():
            target = teacher(input_ids=ids, attention_mask=attn).logits[:, :-1][mask]
    else:
        target = batch["teacher_logprobs"][:, :-1].to(dev)[mask]
        indices = batch["teacher_indices"][:, :-1].to(dev)[mask]
    if not engine.training:  # evaluate() switches the engine to eval mode
        return distillation_loss(
            student, target, loss="forward_kl", top_k=loss.top_k, teacher_indices=indices
        )
    return distillation_loss(
        student,
        target,
        loss=loss.name,
        temperature=loss.temperature,
        top_k=loss.top_k,
        teacher_indices=indices,
        beta=loss.beta,
        labels=labels[mask],
        ce_weight=loss.ce_weight,
    )


def distill_worker(config: dict[str, Any]) -> None:
    """Ray Train worker of a distillation run: the CPT/SFT worker's steps, another loss."""
    from soaes.train.engine import load_frozen
    from soaes.train.loop import run_eval, train_steps
    from soaes.train.worker import announce_start, finish, start_worker

    plan: RunPlan = config["plan"]
    spec = plan.teacher
    if spec is None:
        raise ValueError(f"{plan.run.name}: a distillation plan needs a teacher")
    collate = functools.partial(
        collate_distill,
        pad_id=plan.pad_id,
        pad_to_multiple=plan.pad_to_multiple,
        top_k=spec.stored_k,
    )
    w = start_worker(plan, collate)
    teacher = None
    if spec.online:
        teacher = load_frozen(spec.path, plan.dtype, plan.trust_remote_code)
        teacher = teacher.to(w.engine.device)
    loss_fn = functools.partial(distill_loss, teacher=teacher, loss=spec.loss)
    announce_start(plan, w)
    if w.state.step == 0:  # the undistilled draft's held-out KL (the "before" figure)
        run_eval(w.engine, plan, w.state, w.evals, loss_fn)
    state = train_steps(
        w.engine, plan, w.state, w.shard, collate, w.evals, loss_fn, w.first_batches
    )
    finish(w.engine, plan, state)


def build_plan(
    cfg: DistillConfig, run_dir: Path, draft_dir: Path, target_dir: str, data_dir: Path, pad_id: int
) -> RunPlan:
    """The worker plan: the draft is the trained model, the teacher and loss its ``teacher``."""
    from soaes.train.data import read_rows
    from soaes.train.launch import plan_fields

    rows = count_rows([str(data_dir / "train")])
    stored_k = cfg.loss.top_k if cfg.teacher == "offline" else 0
    columns = DISTILL_COLUMNS + (TEACHER_COLUMNS if stored_k else [])
    return RunPlan(
        run_dir=str(run_dir),
        model_path=str(draft_dir),
        tokenizer_src=str(draft_dir),
        dtype=cfg.target.dtype,
        trust_remote_code=cfg.target.trust_remote_code,
        collate="distill",
        pad_id=pad_id,
        eval_rows={"heldout": read_rows([str(data_dir / "eval")], cfg.data.eval_rows, columns)},
        pad_to_multiple=cfg.pad_to_multiple,
        run=RunInfo(cfg.name, "distill", init_from=str(draft_dir), config_hash=config_hash(cfg)),
        teacher=TeacherPlan(
            loss=cfg.loss,
            path=target_dir if cfg.teacher == "online" else None,
            stored_k=stored_k,
        ),
        **plan_fields(cfg, rows, cfg.epochs, cfg.max_steps),
    )


def _trained_steps(run_dir: Path) -> int:
    """Steps of the run's finished HF export (0 when there is none)."""
    marker = run_dir / "hf" / "SOAES_EXPORT.json"
    return int(json.loads(marker.read_text()).get("step", 0)) if marker.is_file() else 0


def train_draft(
    cfg: DistillConfig, run_dir: Path, draft_dir: Path, target_dir: str, data_dir: Path
) -> dict[str, Any]:
    """Run (or skip, when ``hf/`` already holds the full run) the Ray Train distillation."""
    from transformers import AutoTokenizer

    from soaes.train.launch import check_run_dir, fit, summarize

    tok = AutoTokenizer.from_pretrained(draft_dir)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    plan = build_plan(cfg, run_dir, draft_dir, target_dir, data_dir, int(pad_id or 0))
    if _trained_steps(run_dir) < plan.total_steps:
        check_run_dir(run_dir, cfg.checkpoint.resume)
        cols = DISTILL_COLUMNS + (TEACHER_COLUMNS if cfg.teacher == "offline" else [])
        datasets = {
            "train": parquet_dataset([str(data_dir / "train")], cols),
            "heldout": parquet_dataset([str(data_dir / "eval")], cols),
        }
        log.info(
            "distill %s: %d steps, %d workers, %s teacher -> %s",
            cfg.name,
            plan.total_steps,
            cfg.scaling.num_workers,
            cfg.teacher,
            run_dir,
        )
        fit(
            distill_worker,
            plan,
            datasets,
            cfg.scaling,
            cfg.fault,
            cfg.checkpoint.keep_last,
            run_dir,
        )
    summary = summarize(run_dir)
    summary["heldout_kl_before"] = summary["eval_first"].get("heldout/loss")
    summary["heldout_kl_after"] = summary["eval_last"].get("heldout/loss")
    return summary


def run_distill(cfg: DistillConfig) -> dict[str, Any]:
    """Build and distil a draft for ``cfg.target``; return the run summary.

    Training only: the ``distill`` pipeline's acceptance measurement (``cfg.acceptance``) is
    run after it by :func:`soaes.recipe.distill.run_distill_pipeline`.

    Returns:
        Steps, train loss, held-out KL before/after and paths.
    """
    from soaes.models.draft import build_draft
    from soaes.ray_env import connect
    from soaes.train.distill_data import prepare_data

    connect(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.include_dashboard)
    run_dir = Path(cfg.output_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, run_dir)
    target_dir = str(Path(resolve(cfg.target.path)).resolve())
    draft_dir = run_dir / "draft_init"
    if not (draft_dir / "config.json").is_file():
        draft_dir = build_draft(cfg.draft, target_dir, draft_dir)
    data_dir = prepare_data(cfg, target_dir, str(draft_dir), run_dir / "data")
    summary = {
        "kind": "distill",
        "name": cfg.name,
        "target": target_dir,
        "draft_init": str(draft_dir),
        **train_draft(cfg, run_dir, Path(draft_dir), target_dir, data_dir),
    }
    if cfg.eagle3 is not None and not (run_dir / "eagle3" / "config.json").is_file():
        from soaes.train.eagle3 import train_eagle3

        summary["eagle3"] = train_eagle3(cfg.eagle3, target_dir, data_dir, run_dir / "eagle3")
    return summary
