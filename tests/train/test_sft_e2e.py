"""Domain-progressive SFT end to end on the tiny preset, 2 Ray Train workers, ZeRO-2 on CPU.

The run is the tiny recipe's ``sft_cpt`` stage (session fixture ``tiny_recipe``: real data
pipeline output, real CPT export as the starting point). Stage 2 must start from stage 1's
weights: its loss before any step (reported by the workers) equals the loss of stage 1's
exported model on the same held-out rows, computed here with transformers, and differs
from the CPT model's it would have if it had restarted from there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from soaes.models.checkpoint import export_meta
from soaes.train.data import collate_sft, read_rows, rows_to_micro_batches
from soaes.train.metrics import read_jsonl

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def sft_run(tiny_recipe):
    run = tiny_recipe.stage("sft_cpt")
    summary = json.loads((run / "STAGE_DONE.json").read_text())["summary"]
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    return run, summary, cfg, tiny_recipe.stage("data_sft")


def _heldout_loss(model_dir: Path, sft_data: Path, stage: str, cfg: dict) -> float:
    """Token-weighted loss over the rows the workers evaluate (all ranks' micro-batches)."""
    import functools

    import torch

    from soaes.models.checkpoint import load_hf

    mbs, world = cfg["micro_batch_size"], cfg["scaling"]["num_workers"]
    model, tok = load_hf(model_dir)
    n_rows = cfg["logging"]["eval_max_batches"] * mbs * world
    rows = read_rows([str(sft_data / stage / "validation")], n_rows, ["input_ids", "labels"])
    collate = functools.partial(collate_sft, pad_id=tok.pad_token_id)
    tot = n = 0
    with torch.no_grad():
        for r in range(world):
            for b in rows_to_micro_batches(rows, r, world, mbs, collate):
                k = int((b["labels"][:, 1:] != -100).sum())
                tot += float(model(**b, use_cache=False).loss) * k
                n += k
    return tot / n


def test_stages_run_in_order_and_export(sft_run):
    out, summary, cfg, _ = sft_run
    names = [s["stage"] for s in summary["stages"]]
    assert names == ["stage1_chat", "stage2_domain"]
    s1, s2 = (read_jsonl(out / n / "metrics.jsonl") for n in names)
    assert s1[-1]["event"] == "end" and s2[0]["time"] > s1[-1]["time"]
    assert export_meta(out / "stage2_domain" / "hf")["init_from"] == str(out / "stage1_chat" / "hf")
    assert (out / "hf").resolve() == (out / "stage2_domain" / "hf").resolve()
    for n in names:
        for f in (
            "hf/model.safetensors",
            "metrics.jsonl",
            "loss_curve.png",
            "config.resolved.yaml",
        ):
            assert (out / n / f).exists(), f"{n}/{f}"
    # a stage trains its max_steps, else the steps its epochs plan (data_seen.json)
    for st, st_cfg in zip(summary["stages"], cfg["stages"], strict=True):
        seen = json.loads((out / st["stage"] / "data_seen.json").read_text())
        assert st["steps"] == (st_cfg["max_steps"] or seen["steps"]) and st["steps"] > 0
        assert st["last_train_loss"] < st["first_train_loss"]
    # Stage 2 trains on domain Q&A: its held-out loss falls.
    e1, e2 = summary["stages"][1]["eval_first"], summary["stages"][1]["eval_last"]
    assert e2["val_stage2_domain/loss"] < e1["val_stage2_domain/loss"]


def test_stage2_started_from_stage1_weights(sft_run):
    out, summary, cfg, sft_data = sft_run
    reported = summary["stages"][1]["eval_first"]["val_stage2_domain/loss"]  # step 0 of stage 2
    from_stage1 = _heldout_loss(out / "stage1_chat" / "hf", sft_data, "stage2_domain", cfg)
    from_base = _heldout_loss(Path(cfg["model"]["path"]), sft_data, "stage2_domain", cfg)
    assert reported == pytest.approx(from_stage1, abs=1e-4)
    assert abs(reported - from_base) > 1e-2
