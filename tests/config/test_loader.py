"""Config system: strict + frozen models, overrides, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from soaes.config.loader import (
    ConfigError,
    apply_overrides,
    config_hash,
    load_config,
    save_resolved,
    update_config,
)

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "pipelines" / "data_cpt_tiny.yaml"


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return p


def test_unknown_key_is_rejected_with_path(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["mix"]["ratoi"] = 1
    with pytest.raises(ConfigError, match=r"mix\.ratoi: Extra inputs are not permitted"):
        load_config(_write(tmp_path, data))


def test_wrong_type_names_the_field(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["seq_len"] = "long"
    with pytest.raises(ConfigError, match=r"seq_len: Input should be a valid integer"):
        load_config(_write(tmp_path, data))


def test_nested_list_field_is_named(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["sources"][1]["max_docs"] = -3
    with pytest.raises(ConfigError, match=r"sources\.1\.max_docs"):
        load_config(_write(tmp_path, data))


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        load_config(_write(tmp_path, {"kind": "nope", "name": "x"}))


def test_overrides_apply_and_are_typed():
    cfg = load_config(TINY, ["seq_len=64", "mix.ratio.domain=2.5", "sources.0.max_docs=10"])
    assert cfg.seq_len == 64
    assert cfg.mix.ratio["domain"] == 2.5
    assert cfg.sources[0].max_docs == 10


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(TINY, ["seq_len"])
    with pytest.raises(ConfigError, match=r"sources\.9: list index out of range"):
        load_config(TINY, ["sources.9.max_docs=1"])
    with pytest.raises(ConfigError, match="seq_len: Input should be greater than or equal to 8"):
        load_config(TINY, ["seq_len=2"])


def test_cross_field_validation_names_the_problem():
    with pytest.raises(ConfigError, match=r"mix\.ratio names groups with no source: \['legal'\]"):
        load_config(TINY, ["mix.ratio={legal: 1}"])


def test_config_is_frozen_and_hash_is_stable(tmp_path):
    a = load_config(TINY)
    with pytest.raises(ValidationError):
        a.seq_len = 1  # type: ignore[misc]
    assert config_hash(a) == config_hash(load_config(TINY))
    assert config_hash(a) != config_hash(load_config(TINY, ["seq_len=64"]))
    out = save_resolved(a, tmp_path / "run")
    saved = yaml.safe_load(out.read_text())
    assert saved["config_hash"] == config_hash(a) and saved["seq_len"] == a.seq_len
    again = load_config(out)  # a run's resolved config loads back to the same config
    assert again == a and config_hash(again) == config_hash(a)


def test_apply_overrides_does_not_mutate_input():
    data = {"a": {"b": 1}}
    assert apply_overrides(data, ["a.b=2", "a.c=[1, 2]"]) == {"a": {"b": 2, "c": [1, 2]}}
    assert data == {"a": {"b": 1}}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "pipelines").glob("*.yaml")))
def test_update_config_without_updates_keeps_the_hash(name):
    cfg = load_config(ROOT / "pipelines" / name)
    assert config_hash(update_config(cfg, {})) == config_hash(cfg)


def test_update_config_sets_typed_values_and_names_the_wrong_field():
    from soaes.config.eval import EvalModelConfig

    cfg = load_config(ROOT / "pipelines" / "eval_tiny.yaml")
    extra = EvalModelConfig(name="x", path="tiny/target")
    new = update_config(cfg, {"models": [*cfg.models, extra], "mmlu.seed": 3})
    assert new.models[-1] == extra and new.mmlu.seed == 3
    assert cfg.mmlu.seed == 0  # the original is untouched
    with pytest.raises(ConfigError, match=r"stage eval: mmlu\.sed: no such field in EvalConfig"):
        update_config(cfg, {"mmlu.sed": 3}, source="stage eval")
    with pytest.raises(ConfigError, match=r"stage eval: mmlu\.n_per_subject: Input should be"):
        update_config(cfg, {"mmlu.n_per_subject": 0}, source="stage eval")
    with pytest.raises(ConfigError, match=r"models\.0\.name: String should match"):
        update_config(cfg, {"models": [{"name": "a b", "path": "p"}]})
    with pytest.raises(ConfigError, match=r"retention\.baseline 'target' is not in models"):
        update_config(cfg, {"models": [extra]})  # cross-field checks run again
