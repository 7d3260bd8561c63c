"""An eval task never runs more torch threads than the CPUs it may run on."""

import os

import torch

from soaes.eval.runner import _cap_threads


def test_threads_capped_at_cores():
    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(cores + 2)
        _cap_threads()
        assert torch.get_num_threads() == cores
        torch.set_num_threads(1)
        _cap_threads()
        assert torch.get_num_threads() == 1  # fewer than the cores: left alone
    finally:
        torch.set_num_threads(before)
