"""An eval task never runs more torch threads than the CPUs it may run on."""

import os

import pytest
import torch

from soaes.eval.runner import _cap_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch._C.set_num_threads(before)


def test_threads_capped_at_cores(restore_threads):
    cores = len(os.sched_getaffinity(0))
    torch._C.set_num_threads(cores + 2)
    _cap_threads()
    assert torch.get_num_threads() == cores
    torch._C.set_num_threads(1)
    _cap_threads()
    assert torch.get_num_threads() == 1  # fewer than the cores: left alone


def test_cap_holds_after_vllm_replaced_the_setter(restore_threads, monkeypatch):
    """vLLM's CPU worker swaps ``torch.set_num_threads`` for a no-op in its process (seen in
    CI, where an in-process engine ran before this test); the cap must still apply."""
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    cores = len(os.sched_getaffinity(0))
    torch._C.set_num_threads(cores + 2)
    _cap_threads()
    assert torch.get_num_threads() == cores
