"""Ray's private APIs stay in soaes.ray_private, and every one of them still exists.

A Ray upgrade that moves one fails here, naming it; the public APIs used beside them are
checked too, so the Serve app builder's imports are known to resolve.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from soaes.ray_private import PRIVATE_APIS, RAY_DATA_LOG_CLASSES

PKG = Path(__file__).resolve().parents[1] / "platform" / "src" / "soaes"
PUBLIC_APIS = (
    ("ray.serve.llm", "LLMConfig"),
    ("ray.serve.llm", "build_llm_deployment"),
    ("ray.serve.llm.ingress", "OpenAiIngress"),
    ("ray.serve.llm.ingress", "make_fastapi_ingress"),
)


def _is_private(module: str) -> bool:
    return module.startswith("ray") and any(p.startswith("_") for p in module.split(".")[1:])


@pytest.mark.parametrize(
    "module,attr", PRIVATE_APIS + RAY_DATA_LOG_CLASSES + PUBLIC_APIS, ids=lambda x: str(x)
)
def test_ray_still_has_it(module, attr):
    assert hasattr(importlib.import_module(module), attr), f"{module}.{attr} is gone"


def test_private_ray_imports_only_in_ray_private():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "ray_private.py" and path.parent == PKG:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [f"{path.relative_to(PKG)}:{node.lineno} {n}" for n in names if _is_private(n)]
    assert not found, "import these through soaes.ray_private:\n" + "\n".join(found)


def test_every_private_import_in_ray_private_is_listed():
    tree = ast.parse((PKG / "ray_private.py").read_text(encoding="utf-8"))
    used = {
        (node.module, a.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and _is_private(node.module)
        for a in node.names
    }
    assert used == set(PRIVATE_APIS)


def test_the_env_flags_soaes_sets_are_still_read_by_ray():
    """ray_env sets these by name; a rename in Ray would silently turn them off."""
    import ray.data.context
    from ray.train.v2._internal.constants import ENABLE_PREEMPTION_WATCHER_ENV_VAR

    from soaes.ray_env import LOOPBACK_ENV, QUIET_CONSOLE_ENV

    assert ENABLE_PREEMPTION_WATCHER_ENV_VAR in LOOPBACK_ENV
    context = Path(ray.data.context.__file__).read_text(encoding="utf-8")
    assert all(f'"{k}"' in context for k in QUIET_CONSOLE_ENV if k.startswith("RAY_DATA_"))


def test_filtered_worker_output_prints_only_kept_lines(ray_session, capfd):
    import time

    from soaes.ray_private import filter_worker_output

    @ray_session.remote(num_cpus=0)
    def talk(tag: str) -> None:
        print(f"[keep-{tag}] progress line", flush=True)
        print(f"vendor noise {tag}", flush=True)

    logs = filter_worker_output(lambda line: line.startswith("[keep-"))
    try:
        assert logs and Path(logs).is_dir()
        ray_session.get(talk.remote("a"))
        out = ""
        for _ in range(40):  # Ray forwards worker output asynchronously
            out += capfd.readouterr().out
            if "[keep-a]" in out:
                break
            time.sleep(0.25)
        time.sleep(1.0)
        out += capfd.readouterr().out
        assert "[keep-a] progress line" in out and "vendor noise a" not in out
    finally:
        filter_worker_output(lambda line: True)  # the rest of the session prints as before
