"""Training-test fixtures: small CPT/SFT datasets made by the real data pipelines (slices of
pipelines/data_*_tiny.yaml: real law text, People's Daily, chat corpora, tiny tokenizer) and
the DeepSpeed op cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ds_ops():
    """DeepSpeed's CPU comm op compiled once into the shared cache (a no-op when cached)."""
    from soaes.train.engine import default_extensions_dir, prebuild_ops

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", default_extensions_dir())
    return prebuild_ops()


@pytest.fixture(scope="session")
def cpt_data(ray_session, tmp_path_factory, tiny_paths) -> Path:
    """Packed CPT shards from the real ``data_cpt`` pipeline (a small slice of its tiny YAML)."""
    from soaes.config.loader import load_config
    from soaes.data.pipeline import run_cpt_data

    out = tmp_path_factory.mktemp("cpt_data")
    cfg = load_config(
        ROOT / "pipelines" / "data_cpt_tiny.yaml",
        [
            f"output_dir={out}",
            "sources.0.max_docs=900",
            "sources.1.max_docs=700",
            "sources.2.max_docs=40",
            "validation_fraction=0.06",
        ],
    )
    run_cpt_data(cfg)
    return out


@pytest.fixture(scope="session")
def sft_data(ray_session, tmp_path_factory, tiny_paths) -> Path:
    """Two SFT stages from the real ``data_sft`` pipeline (a small slice of its tiny YAML)."""
    from soaes.config.loader import load_config
    from soaes.data.sft import run_sft_data

    out = tmp_path_factory.mktemp("sft_data")
    cfg = load_config(
        ROOT / "pipelines" / "data_sft_tiny.yaml",
        [
            f"output_dir={out}",
            "stages.0.sources.1.max_examples=150",
            "stages.0.sources.2.max_examples=100",
            "stages.1.sources.0.max_examples=300",
            "stages.1.sources.1.max_examples=100",
        ],
    )
    run_sft_data(cfg)
    return out
