"""Every YAML shipped under pipelines/ and serve_apps/ validates; the CLI prints each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from soaes.cli import main
from soaes.config.loader import load_config
from soaes.config.pipeline import PIPELINES as KINDS

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_pipeline_validates_and_has_runner(path, capsys):
    cfg = load_config(path)
    assert cfg.kind in KINDS
    assert main(["run", str(path), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["kind"] == cfg.kind and len(printed["config_hash"]) == 16


def test_there_are_pipelines():
    assert len(PIPELINES) >= 2


def test_cli_reports_config_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: data_cpt\nname: x\n")
    assert main(["run", str(bad), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "output_dir: Field required" in err and "tokenizer: Field required" in err
