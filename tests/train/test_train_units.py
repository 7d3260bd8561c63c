"""Pure pieces of the training stack: DeepSpeed config, LR schedule, step plan, data position,
collate functions, config validation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from soaes.config.loader import ConfigError, load_config
from soaes.config.train import CPTConfig, DeepSpeedSpec, OptimSpec, SFTConfig
from soaes.train.data import (
    IGNORE_INDEX,
    collate_cpt,
    collate_sft,
    data_position,
    rows_to_micro_batches,
)
from soaes.train.ds_config import build_ds_config, lr_multiplier
from soaes.train.launch import plan_fields, plan_steps
from soaes.train.loop import RunPlan

ROOT = Path(__file__).resolve().parents[2]


def test_ds_config_zero3_bf16_offload_and_passthrough():
    ds = DeepSpeedSpec(
        zero_stage=3,
        precision="bf16",
        optimizer="deepspeed_adamw",
        offload_optimizer="cpu",
        extra={"zero_optimization": {"sub_group_size": 7}},
    )
    cfg = build_ds_config(
        ds, OptimSpec(lr=3e-4, grad_clip=0.5), micro_batch_size=2, grad_accum_steps=8, world_size=1
    )
    zero = cfg["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["sub_group_size"] == 7 and zero["contiguous_gradients"] is True  # deep merge
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    assert cfg["optimizer"]["params"]["lr"] == 3e-4 and cfg["gradient_clipping"] == 0.5
    assert cfg["train_micro_batch_size_per_gpu"] == 2 and cfg["gradient_accumulation_steps"] == 8
    assert "train_batch_size" not in cfg  # DeepSpeed derives it from the world size


def test_ds_config_client_optimizer_on_cpu():
    cfg = build_ds_config(DeepSpeedSpec(), OptimSpec(grad_clip=None), 4, 1, world_size=2)
    assert "optimizer" not in cfg and "gradient_clipping" not in cfg
    assert cfg["zero_optimization"]["stage"] == 2 and not cfg["bf16"]["enabled"]


def test_one_worker_without_offload_runs_zero_stage_0():
    optim = OptimSpec()
    for stage in (1, 2, 3):
        one = build_ds_config(DeepSpeedSpec(zero_stage=stage), optim, 4, 1, world_size=1)
        assert one["zero_optimization"]["stage"] == 0
        assert "stage3_gather_16bit_weights_on_model_save" not in one["zero_optimization"]
        kept = DeepSpeedSpec(zero_stage=stage, zero_on_one_worker=True)
        assert build_ds_config(kept, optim, 4, 1, 1)["zero_optimization"]["stage"] == stage
    offload = DeepSpeedSpec(
        zero_stage=2, optimizer="deepspeed_adamw", offload_optimizer="cpu"
    )  # ZeRO-Offload needs a ZeRO stage even on one worker
    assert build_ds_config(offload, optim, 4, 1, 1)["zero_optimization"]["stage"] == 2


def test_lr_schedule_warmup_then_cosine_to_floor():
    opt = OptimSpec(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    mult = [lr_multiplier(s, opt, 20) for s in range(21)]
    assert mult[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(mult[4:], mult[5:], strict=False))  # decays monotonically
    assert math.isclose(mult[20], 0.1) and math.isclose(mult[12], 0.55)
    lin = OptimSpec(lr=1.0, warmup_ratio=0.1, schedule="linear", min_lr_ratio=0.0)
    assert lr_multiplier(0, lin, 10) == 1.0 and math.isclose(lr_multiplier(5, lin, 10), 5 / 9)
    const = OptimSpec(lr=1.0, schedule="constant")
    assert {lr_multiplier(s, const, 10) for s in range(10)} == {1.0}


def test_plan_steps_whole_optimizer_steps_per_epoch():
    assert plan_steps(
        rows=100, micro_batch_size=4, world=2, grad_accum_steps=3, epochs=2.0, max_steps=None
    ) == (12, 8)
    assert plan_steps(100, 4, 2, 1, 1.0, max_steps=50) == (12, 50)
    with pytest.raises(ValueError, match="no optimizer step"):
        plan_steps(7, 4, 2, 1, 1.0, None)


@pytest.mark.parametrize("pipeline", ["cpt_tiny", "sft_progressive_tiny", "distill_tiny"])
def test_plan_fields_come_from_every_kind_of_training_config(pipeline, monkeypatch):
    monkeypatch.delenv("SOAES_FAIL_AT_STEP", raising=False)
    cfg = load_config(ROOT / "pipelines" / f"{pipeline}.yaml", ["fault.fail_at_step=3"])
    per_step = cfg.micro_batch_size * cfg.scaling.num_workers * cfg.grad_accum_steps
    f = plan_fields(cfg, rows=10 * per_step, epochs=2.0, max_steps=None)
    assert set(f) <= {field.name for field in dataclasses.fields(RunPlan)}
    assert (f["micro_per_epoch"], f["total_steps"]) == (10 * cfg.grad_accum_steps, 20)
    world = cfg.scaling.num_workers
    assert f["ds_config"] == build_ds_config(
        cfg.deepspeed, cfg.optim, cfg.micro_batch_size, cfg.grad_accum_steps, world
    )
    assert (f["fail_at_step"], f["fail_rank"], f["seed"]) == (3, cfg.fault.fail_rank, cfg.seed)
    assert plan_fields(cfg, 10 * per_step, 2.0, max_steps=7)["total_steps"] == 7
    stage_optim = cfg.optim.model_copy(update={"lr": 1e-3})
    f = plan_fields(cfg, 10 * per_step, 1.0, None, optim=stage_optim)
    assert f["optim"].lr == 1e-3
    assert f["ds_config"] == build_ds_config(
        cfg.deepspeed, stage_optim, cfg.micro_batch_size, cfg.grad_accum_steps, world
    )


def test_data_position_resumes_inside_epoch():
    assert data_position(0, 12) == (0, 0)
    assert data_position(17, 12) == (1, 5)
    assert data_position(24, 12) == (2, 0)


def test_collate_cpt_masks_trailing_pads():
    rows = {
        "input_ids": np.array([[5, 6, 7, 0], [1, 2, 3, 4]]),
        "position_ids": np.array([[0, 1, 0, 0], [0, 1, 2, 3]]),
        "n_pad": np.array([1, 0]),
    }
    b = collate_cpt(rows)
    assert b["labels"].tolist() == [[5, 6, 7, IGNORE_INDEX], [1, 2, 3, 4]]
    assert b["position_ids"].tolist() == [[0, 1, 0, 0], [0, 1, 2, 3]]


def test_collate_sft_pads_with_ignored_labels():
    ids = np.empty(2, dtype=object)
    ids[0], ids[1] = [1, 2, 3], [4, 5]
    labels = np.empty(2, dtype=object)
    labels[0], labels[1] = [-100, 2, 3], [-100, 5]
    b = collate_sft({"input_ids": ids, "labels": labels}, pad_id=9, pad_to_multiple=4)
    assert b["input_ids"].tolist() == [[1, 2, 3, 9], [4, 5, 9, 9]]
    assert b["labels"].tolist() == [[-100, 2, 3, -100], [-100, 5, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_rank_slices_partition_global_batches():
    rows = {"input_ids": [[i] * 3 for i in range(10)], "n_pad": [0] * 10}
    r0 = rows_to_micro_batches(rows, rank=0, world=2, micro_batch_size=2, collate=collate_cpt)
    r1 = rows_to_micro_batches(rows, rank=1, world=2, micro_batch_size=2, collate=collate_cpt)
    firsts = [int(x) for b in r0 + r1 for x in b["input_ids"][:, 0]]
    assert sorted(firsts) == list(range(8))  # 2 global batches of 4, last 2 rows dropped
    assert [b["input_ids"][:, 0].tolist() for b in r0] == [[0, 1], [4, 5]]


def _cpt(**kw) -> dict:
    return {"name": "x", "output_dir": "o", "data_dir": "d", "model": {"path": "tiny/target"}, **kw}


def test_config_errors_name_the_field():
    with pytest.raises(ValidationError, match="needs scaling.use_gpu"):
        CPTConfig(**_cpt(deepspeed={"precision": "bf16"}))
    with pytest.raises(ValidationError, match="offload_param needs zero_stage 3"):
        CPTConfig(**_cpt(deepspeed={"zero_stage": 2, "offload_param": "cpu"}))
    with pytest.raises(ValidationError, match="fail_rank"):
        CPTConfig(**_cpt(fault={"fail_rank": 2, "fail_at_step": 3}))
    with pytest.raises(ValidationError, match="single_stage needs exactly one stage"):
        SFTConfig(**_cpt(mode="single_stage", stages=[{"name": "a"}, {"name": "b"}]))
    with pytest.raises(ValidationError, match="names must be unique"):
        SFTConfig(**_cpt(stages=[{"name": "a"}, {"name": "a"}]))


TRAINING_YAMLS = sorted(
    p.name
    for pattern in ("cpt_*.yaml", "sft_*.yaml", "distill_*.yaml")
    for p in (ROOT / "pipelines").glob(pattern)
)


@pytest.mark.parametrize("name", TRAINING_YAMLS)
def test_every_training_yaml_validates_with_one_worker(name, monkeypatch):
    """The fault hook's default rank must not block a single-worker run (issue 16)."""
    monkeypatch.delenv("SOAES_FAIL_AT_STEP", raising=False)
    cfg = load_config(ROOT / "pipelines" / name, ["scaling.num_workers=1"])
    assert cfg.scaling.num_workers == 1 and cfg.fault.fail_at_step is None
    rows = cfg.micro_batch_size * cfg.grad_accum_steps * 3
    assert plan_fields(cfg, rows, epochs=1.0, max_steps=None)["fail_at_step"] is None


def test_fault_injection_still_needs_an_existing_rank(monkeypatch):
    monkeypatch.delenv("SOAES_FAIL_AT_STEP", raising=False)
    with pytest.raises(ConfigError, match="fail_rank 1 >= scaling.num_workers 1"):
        load_config(
            ROOT / "pipelines" / "cpt_tiny.yaml", ["scaling.num_workers=1", "fault.fail_at_step=2"]
        )
    cfg = load_config(ROOT / "pipelines" / "cpt_tiny.yaml", ["scaling.num_workers=1"])
    monkeypatch.setenv("SOAES_FAIL_AT_STEP", "2")  # the env var injects a fault too
    with pytest.raises(ValueError, match="fail_rank 1 >= scaling.num_workers 1"):
        plan_fields(cfg, rows=100, epochs=1.0, max_steps=None)
