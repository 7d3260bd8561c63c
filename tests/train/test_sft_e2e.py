"""Domain-progressive SFT end to end on the tiny preset, 2 Ray Train workers, ZeRO-2 on CPU.

Stage 2 must start from stage 1's weights: its loss before any step (reported by the workers)
equals the loss of stage 1's exported model on the same held-out rows, computed here with
transformers, and differs from the base model's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soaes.config.loader import load_config
from soaes.models.checkpoint import export_meta
from soaes.train.data import collate_sft, read_rows, rows_to_micro_batches
from soaes.train.metrics import read_jsonl

pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[2]
MBS, WORLD, EVAL_BATCHES = 4, 2, 3


@pytest.fixture(scope="module")
def sft_run(ray_session, ds_ops, sft_data, tmp_path_factory):
    from soaes.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft_run")
    cfg = load_config(
        ROOT / "pipelines" / "sft_progressive_tiny.yaml",
        [
            f"data_dir={sft_data}",
            f"output_dir={out}",
            f"micro_batch_size={MBS}",
            "stages.0.max_steps=8",
            "stages.1.max_steps=8",
            "checkpoint.every_steps=0",
            "logging.log_every_steps=2",
            f"logging.eval_max_batches={EVAL_BATCHES}",
        ],
    )
    return out, run_sft(cfg)


def _heldout_loss(model_dir: Path, sft_data: Path, stage: str) -> float:
    """Token-weighted loss over the rows the workers evaluate (all ranks' micro-batches)."""
    import functools

    import torch

    from soaes.models.checkpoint import load_hf

    model, tok = load_hf(model_dir)
    rows = read_rows(
        [str(sft_data / stage / "validation")], EVAL_BATCHES * MBS * WORLD, ["input_ids", "labels"]
    )
    collate = functools.partial(collate_sft, pad_id=tok.pad_token_id)
    tot = n = 0
    with torch.no_grad():
        for r in range(WORLD):
            for b in rows_to_micro_batches(rows, r, WORLD, MBS, collate):
                k = int((b["labels"][:, 1:] != -100).sum())
                tot += float(model(**b, use_cache=False).loss) * k
                n += k
    return tot / n


def test_stages_run_in_order_and_export(sft_run):
    out, summary = sft_run
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
    for st in summary["stages"]:
        assert st["steps"] == 8 and st["last_train_loss"] < st["first_train_loss"]
    # Stage 2 trains on domain Q&A: its held-out loss falls.
    e1, e2 = summary["stages"][1]["eval_first"], summary["stages"][1]["eval_last"]
    assert e2["val_stage2_domain/loss"] < e1["val_stage2_domain/loss"]


def test_stage2_started_from_stage1_weights(sft_run, sft_data, tiny_paths):
    out, summary = sft_run
    reported = summary["stages"][1]["eval_first"]["val_stage2_domain/loss"]  # step 0 of stage 2
    from_stage1 = _heldout_loss(out / "stage1_chat" / "hf", sft_data, "stage2_domain")
    from_base = _heldout_loss(Path(tiny_paths["target"]), sft_data, "stage2_domain")
    assert reported == pytest.approx(from_stage1, abs=1e-4)
    assert abs(reported - from_base) > 1e-2
