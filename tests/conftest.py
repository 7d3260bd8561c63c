"""Shared fixtures: one embedded Ray session for the whole test run, assets, tiny preset.

Test tiers (``make test-fast`` runs ``-m "not heavy and not recipe and not gpu"``): a test
that takes a fixture starting Ray, DeepSpeed or the tiny recipe is marked ``heavy`` here
(``recipe`` too for the recipe), so a fast test cannot start a cluster by accident.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures that start a Ray cluster, a DeepSpeed engine or the whole recipe.
HEAVY_FIXTURES = frozenset({"ray_session", "tiny_recipe", "ds_ops", "cpt_data", "sft_data"})


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a heavy fixture ``heavy`` (and ``recipe`` for the recipe)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & HEAVY_FIXTURES:
            item.add_marker(pytest.mark.heavy)
        if "tiny_recipe" in used:
            item.add_marker(pytest.mark.recipe)


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


@dataclass
class RecipeRun:
    """The tiny recipe's run: its folder, config, summary, and the error that stopped it."""

    out: Path
    cfg: object
    summary: dict | None
    error: str | None

    def stage(self, name: str) -> Path:
        """The folder of a finished stage; fails the calling test (only it) when the stage
        did not finish, naming the error that stopped the recipe."""
        folder = self.out / name
        try:
            json.loads((folder / "STAGE_DONE.json").read_text())
        except (OSError, json.JSONDecodeError):
            pytest.fail(
                f"recipe stage {name!r} did not finish; the recipe stopped with: {self.error}"
            )
        return folder


@pytest.fixture(scope="session")
def tiny_recipe(ray_session, tmp_path_factory):
    """The whole tiny recipe (``pipelines/full_tiny.yaml``), run once per test session.

    Its stages are real runs (Ray Data, Ray Train + DeepSpeed, vLLM, Ray Serve over HTTP), so
    the per-area tests that only need *a* finished CPT/SFT/eval run assert on its outputs
    instead of training their own. A failing stage does not error the fixture: each test asks
    for the stage it reads with ``tiny_recipe.stage(name)`` and only those fail.
    """
    from soaes.config.loader import load_config
    from soaes.recipe.full import run_full

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("recipe") / "full"
    cfg = load_config(root / "pipelines" / "full_tiny.yaml", [f"output_dir={out}"])
    try:
        return RecipeRun(out, cfg, run_full(cfg), None)
    except Exception as e:  # noqa: BLE001 - recorded; the tests of the failed stage report it
        return RecipeRun(out, cfg, None, f"{type(e).__name__}: {e}")
