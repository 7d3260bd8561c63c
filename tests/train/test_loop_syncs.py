"""The training loop reads tensors back to the host only at logging steps (issue 16).

A single-process run of :func:`soaes.train.loop.train_steps` on CPU (a real one-rank gloo
group) with every tensor-to-Python conversion counted (``item``, ``tolist``, ``float()``,
``int()``, ``bool()``, ``numpy()``). The engine stands in for DeepSpeed's (its forward, backward
and optimizer step are plain torch and are not counted: what they sync is the engine's, the
same in a plain loop); everything else the loop does per step is counted.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest
import torch
import torch.distributed as dist

from soaes.config.train import CheckpointSpec, LoggingSpec, OptimSpec
from soaes.train import loop
from soaes.train.data import collate_cpt
from soaes.train.metrics import read_jsonl
from soaes.train.plan import RunInfo, RunPlan

CONVERSIONS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy")


class _Counter:
    """Tensor-to-host conversions outside the engine's own calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = 0

    @contextlib.contextmanager
    def pause(self):
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


class _Engine:
    """The part of a DeepSpeed engine the loop uses, over a tiny torch LM and AdamW."""

    def __init__(self, counter: _Counter, vocab: int = 64, width: int = 16) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(
            torch.nn.Embedding(vocab, width), torch.nn.Linear(width, vocab)
        )
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-2)
        self.device, self.world_size, self.counter = torch.device("cpu"), 1, counter

    @property
    def training(self) -> bool:
        return self.module.training

    def __call__(self, input_ids, labels, **_):
        with self.counter.pause():
            logits = self.module(input_ids)[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return types.SimpleNamespace(loss=loss)

    def backward(self, loss) -> None:
        with self.counter.pause():
            loss.backward()

    def step(self) -> None:
        with self.counter.pause():
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)

    def get_lr(self) -> list[float]:
        return [self.opt.param_groups[0]["lr"]]

    def get_global_grad_norm(self) -> float:
        return 1.0

    def train(self) -> None:
        self.module.train()

    def eval(self) -> None:
        self.module.eval()


@pytest.fixture
def one_rank(tmp_path):
    """A real single-process gloo group (``_is_rank0`` and the all-reduce use it)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def counter(monkeypatch) -> _Counter:
    c = _Counter()
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **kw):
            if not c.paused:
                c.calls.append(_name)
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return c


def _batches(n: int, mbs: int = 4, seq: int = 16):
    rng = np.random.default_rng(0)
    for _ in range(n):
        ids = rng.integers(0, 64, size=(mbs, seq))
        n_pad = np.array([0, 3, 0, 1][:mbs])
        yield collate_cpt({"input_ids": ids, "n_pad": n_pad})


def _plan(tmp_path, steps: int, accum: int, log_every: int) -> RunPlan:
    return RunPlan(
        run_dir=str(tmp_path),
        run=RunInfo("sync_test", "cpt", "none", "h"),
        model_path="unused",
        tokenizer_src=None,
        dtype="float32",
        trust_remote_code=False,
        activation_checkpointing=False,
        ds_config={},
        optim=OptimSpec(),
        micro_batch_size=4,
        grad_accum_steps=accum,
        total_steps=steps,
        micro_per_epoch=steps * accum,
        collate="cpt",
        pad_id=0,
        checkpoint=CheckpointSpec(every_steps=0, at_end=False),
        logging=LoggingSpec(log_every_steps=log_every),
    )


def test_no_host_sync_between_logging_steps(tmp_path, one_rank, counter, monkeypatch):
    steps, accum, log_every = 12, 2, 5  # logging steps: 1, 5, 10, 12 (the last)
    logged: list[tuple[int, int]] = []  # (step, conversions in its logging)
    log_interval = loop._log_interval

    def watched(engine, plan, state, win, lr, n_params):
        before = len(counter.calls)
        rec = log_interval(engine, plan, state, win, lr, n_params)
        logged.append((state.step, len(counter.calls) - before))
        return rec

    monkeypatch.setattr(loop, "_log_interval", watched)
    engine, plan = _Engine(counter), _plan(tmp_path, steps, accum, log_every)
    state = loop.train_steps(
        engine,
        plan,
        loop.LoopState(),
        None,
        collate_cpt,
        {},
        loop.causal_lm_loss,
        _batches(steps * accum),
    )
    assert state.step == steps and [s for s, _ in logged] == [1, 5, 10, 12]
    in_logging = sum(n for _, n in logged)
    assert all(n >= 1 for _, n in logged)  # the counter sees the logging step's read-back
    assert len(counter.calls) - in_logging == 0, counter.calls  # nothing between them
    assert max(n for _, n in logged) <= 2  # one read-back of the window (+ the grad norm)
    recs = [r for r in read_jsonl(plan.metrics_path) if r["event"] == "train"]
    assert [r["step"] for r in recs] == [1, 5, 10, 12]
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in recs)


def test_logged_loss_is_the_token_weighted_mean_of_the_interval(tmp_path, one_rank):
    """The device-side sums give the same loss and token count as summing on the host."""
    win = loop._Window()
    losses, counts = [1.5, 3.0], [torch.tensor([10, 12]), torch.tensor([30, 31])]
    for loss, c in zip(losses, counts, strict=True):
        win.add(torch.tensor(loss), c)
    tot, n_loss, n_in = win.totals("cpu")
    assert (tot, n_loss, n_in) == (1.5 * 10 + 3.0 * 30, 40, 43)
