"""DeepSpeed's compiled-op cache: one folder per Python environment, an explicit one wins."""

from __future__ import annotations

from pathlib import Path

from soaes.train.engine import default_extensions_dir, environment_tag


def test_cache_folder_is_keyed_by_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("SOAES_CACHE", str(tmp_path))
    tag = environment_tag()
    assert Path(default_extensions_dir()) == tmp_path / "torch_extensions" / tag
    monkeypatch.setattr("sys.prefix", "/elsewhere/.venv")
    assert environment_tag() != tag  # another checkout's venv: its own folder
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/explicit")
    assert default_extensions_dir() == "/explicit"
