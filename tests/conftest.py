"""Shared fixtures: one embedded Ray session for the whole test run, assets, tiny preset."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_session():
    """One embedded loopback Ray cluster shared by every test that needs Ray."""
    import ray

    from soaes.ray_env import connect

    connect(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_paths():
    """The tiny preset (tokenizer, target, draft), built once."""
    from soaes.models.tiny import build_tiny

    return build_tiny()
