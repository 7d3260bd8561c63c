"""The layout guard: platform/ never shadows the stdlib ``platform`` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_init_in_platform_folder():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "platform" / "src" / "__init__.py").exists()


def test_stdlib_platform_imports_with_repo_root_first():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import platform; "
        "assert hasattr(platform, 'python_version'), platform.__file__; "
        f"print(platform.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "site-packages" not in out.stdout and str(ROOT / "platform") not in out.stdout
