"""The quiet console: third-party progress and INFO lines off the terminal, unless asked."""

from __future__ import annotations

import yaml

from soaes.ray_env import QUIET_CONSOLE_ENV, VERBOSE_ENV, quiet_console
from soaes.ray_private import RAY_DATA_LOG_CLASSES


def _clear(monkeypatch):
    for k in [*QUIET_CONSOLE_ENV, "RAY_DATA_LOGGING_CONFIG", VERBOSE_ENV]:
        monkeypatch.delenv(k, raising=False)


def test_sets_env_and_ray_data_console_at_error(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # the user's own choice stays
    done = quiet_console(tmp_path)
    assert "TQDM_DISABLE" not in done and done["VLLM_LOGGING_LEVEL"] == "WARNING"
    cfg = yaml.safe_load((tmp_path / "ray_data_logging.yaml").read_text())
    assert done["RAY_DATA_LOGGING_CONFIG"] == str(tmp_path / "ray_data_logging.yaml")
    assert cfg["handlers"]["console"]["level"] == "ERROR"
    assert done["RAY_DATA_DISABLE_PROGRESS_BARS"] == "1"
    assert cfg["loggers"]["ray.data"]["handlers"] == ["file", "console"]  # file keeps it all
    named = {h["class"] for h in cfg["handlers"].values()}
    named |= {f["()"] for f in cfg["filters"].values()}
    assert named == {
        f"{m}.{a}" for m, a in RAY_DATA_LOG_CLASSES
    }  # each checked by test_ray_private


def test_verbose_env_leaves_everything(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert quiet_console(tmp_path) == {} and not (tmp_path / "ray_data_logging.yaml").exists()
