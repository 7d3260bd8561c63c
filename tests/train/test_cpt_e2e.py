"""CPT end to end on the tiny preset, 2 Ray Train workers, DeepSpeed ZeRO-2 on CPU.

One run (module fixture) with a worker killed after step 6 (checkpoints every 4, evaluation
every 5) proves: loss falls, the run resumes from the last checkpoint and finishes, the step
counter continues, the consumed batches equal the data order with repeats only inside one
checkpoint interval, step 5 (evaluated before the crash, re-run after it) has one evaluation,
and the HF export reloads in transformers and vLLM. A second call on the same run folder
proves manual resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soaes.config.loader import load_config
from soaes.train.data import batch_fingerprint, collate_cpt, read_rows, rows_to_micro_batches
from soaes.train.metrics import read_jsonl

pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY, FAIL_AT, MBS, WORLD, EVAL_EVERY = 16, 4, 6, 4, 2, 5


def _cfg(data: Path, out: Path, *extra: str):
    return load_config(
        ROOT / "pipelines" / "cpt_tiny.yaml",
        [
            f"data_dir={data}",
            f"output_dir={out}",
            f"max_steps={STEPS}",
            f"micro_batch_size={MBS}",
            f"checkpoint.every_steps={EVERY}",
            f"fault.fail_at_step={FAIL_AT}",
            "fault.max_failures=1",
            "logging.log_every_steps=1",
            f"logging.eval_every_steps={EVAL_EVERY}",
            "logging.eval_max_batches=4",
            "logging.trace_batches=true",
            "optim.warmup_steps=2",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def cpt_run(ray_session, ds_ops, cpt_data, tmp_path_factory):
    from soaes.train.cpt import run_cpt

    out = tmp_path_factory.mktemp("cpt_run")
    summary = run_cpt(_cfg(cpt_data, out))
    return out, summary, read_jsonl(out / "metrics.jsonl")


def test_loss_falls_and_run_folder_is_complete(cpt_run):
    out, summary, recs = cpt_run
    assert summary["steps"] == STEPS
    first, last = summary["eval_first"], summary["eval_last"]
    assert last["val_domain/loss"] < first["val_domain/loss"] - 0.3
    assert last["val_general/loss"] < first["val_general/loss"]
    assert summary["last_train_loss"] < summary["first_train_loss"] - 0.3
    train = [r for r in recs if r.get("event") == "train"]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "step_time_s"} <= set(train[-1])
    assert all(r["tokens_per_s"] > 0 and np.isfinite(r["grad_norm"]) for r in train)
    for name in (
        "config.resolved.yaml",
        "loss_curve.png",
        "metrics.jsonl",
        "hf/model.safetensors",
        "hf/tokenizer.json",
        "hf/config.json",
        "checkpoints/latest",
    ):
        assert (out / name).exists(), name
    assert (out / "checkpoints" / "latest").read_text() == f"step_{STEPS:08d}"


def test_worker_failure_resumes_from_last_checkpoint(cpt_run):
    out, summary, recs = cpt_run
    resumes = [r for r in recs if r.get("event") == "resume"]
    assert summary["restarts"] == 1 and (out / ".fault_injected").exists()
    assert resumes[0]["step"] == FAIL_AT // EVERY * EVERY  # the last checkpoint before the crash
    steps_logged = [r["step"] for r in recs if r.get("event") == "train"]
    crash = steps_logged.index(FAIL_AT) + 1
    assert steps_logged[:crash] == list(range(1, FAIL_AT + 1))
    assert steps_logged[crash:] == list(
        range(resumes[0]["step"] + 1, STEPS + 1)
    )  # counter continues


def _eval_steps(recs: list[dict]) -> list[int]:
    return [r["step"] for r in recs if r.get("event") == "eval"]


def test_restarted_run_evaluates_each_step_once(cpt_run):
    """Step 5 was evaluated, then the worker died at 6 and the run re-trained 5-6 from the
    step-4 checkpoint: metrics.jsonl still holds one evaluation per step."""
    _, _, recs = cpt_run
    assert _eval_steps(recs) == [0, 5, 10, 15, 16]


def test_no_batch_repeated_or_skipped_beyond_one_interval(cpt_run, cpt_data):
    """The batches behind the final weights are exactly the data order (rank 0's slices)."""
    _, _, recs = cpt_run
    seen: dict[int, list[str]] = {}
    trained_twice = 0
    for r in recs:
        for step, fps in r.get("batches", {}).items():
            trained_twice += int(step) in seen
            seen[int(step)] = fps  # the resumed attempt's batch replaces the discarded one
    rows = read_rows([str(cpt_data / "train")], STEPS * MBS * WORLD, ["input_ids", "n_pad"])
    expected = [
        batch_fingerprint(b) for b in rows_to_micro_batches(rows, 0, WORLD, MBS, collate_cpt)
    ]
    assert [seen[s][0] for s in range(1, STEPS + 1)] == expected
    assert 0 < trained_twice <= EVERY


def test_hf_export_reloads_in_transformers(cpt_run, cpt_data):
    """The export holds the trained weights: its loss on the held-out rows equals the loss
    the workers reported at the end, and it generates."""
    import torch

    from soaes.models.checkpoint import export_meta, load_hf

    out, summary, _ = cpt_run
    model, tok = load_hf(out / "hf")
    assert export_meta(out / "hf")["step"] == STEPS
    rows = read_rows(
        [str(cpt_data / "validation" / "domain")],
        4 * MBS * WORLD,
        ["input_ids", "position_ids", "n_pad"],
    )
    batches = [
        b for r in range(WORLD) for b in rows_to_micro_batches(rows, r, WORLD, MBS, collate_cpt)
    ]
    tot = n = 0
    with torch.no_grad():
        for b in batches:
            k = int((b["labels"][:, 1:] != -100).sum())
            # As in training: no KV cache, so transformers masks attention to each packed
            # document (from the position_ids resets).
            tot += float(model(**b, use_cache=False).loss) * k
            n += k
    assert tot / n == pytest.approx(summary["eval_last"]["val_domain/loss"], abs=1e-4)
    ids = tok("中华人民共和国", return_tensors="pt").input_ids
    gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] == ids.shape[1] + 8


def test_hf_export_generates_in_vllm(cpt_run):
    """vLLM's CPU engine loads the export; its greedy tokens equal transformers' greedy."""
    import torch

    from soaes.inference.engine import close_llm
    from soaes.models.checkpoint import load_hf

    out, _, _ = cpt_run
    prompt = "中华人民共和国公司法第一条"
    model, tok = load_hf(out / "hf")
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1] :].tolist()
    llm = _vllm(str(out / "hf"))
    try:
        from vllm import SamplingParams

        res = llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True))
        got = list(res[0].outputs[0].token_ids)
    finally:
        close_llm(llm)
    assert len(got) == 6 and got[:3] == ref[:3]


def _vllm(path: str):
    from vllm import LLM

    return LLM(
        model=path, dtype="float32", enforce_eager=True, max_model_len=256, max_num_seqs=4, seed=0
    )


def test_manual_resume_continues_a_stopped_run(cpt_run, cpt_data):
    """Running the same pipeline again with more steps continues from checkpoints/latest."""
    from soaes.train.cpt import run_cpt

    out, _, _ = cpt_run
    summary = run_cpt(
        _cfg(
            cpt_data,
            out,
            f"max_steps={STEPS + 4}",
            "fault.fail_at_step=null",
            "logging.eval_every_steps=0",
        )
    )
    recs = read_jsonl(out / "metrics.jsonl")
    resume = [r for r in recs if r.get("event") == "resume"][-1]
    assert resume["step"] == STEPS and summary["steps"] == STEPS + 4
    assert _eval_steps(recs) == [0, 5, 10, 15, 16, STEPS + 4]  # nothing re-evaluated
    tail = [r["step"] for r in recs if r.get("event") == "train"][-4:]
    assert tail == [STEPS + 1, STEPS + 2, STEPS + 3, STEPS + 4]
    assert json.loads((out / "hf" / "SOAES_EXPORT.json").read_text())["step"] == STEPS + 4
