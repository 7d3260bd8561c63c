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


@pytest.fixture(scope="session")
def tiny_recipe(ray_session, tmp_path_factory):
    """The whole tiny recipe (``pipelines/full_tiny.yaml``), run once per test session.

    Its stages are real runs (Ray Data, Ray Train + DeepSpeed, vLLM, Ray Serve over HTTP), so
    the per-area tests that only need *a* finished CPT/SFT/eval run assert on its outputs
    instead of training their own. Returns ``(output_dir, config, run_full summary)``.
    """
    from pathlib import Path

    from soaes.config.loader import load_config
    from soaes.recipe.full import run_full

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("recipe") / "full"
    cfg = load_config(root / "pipelines" / "full_tiny.yaml", [f"output_dir={out}"])
    return out, cfg, run_full(cfg)
