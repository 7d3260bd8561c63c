"""The package's import contract, its function-length rule and the pipeline registry.

Every module's ``import``/``from`` statements are read with ``ast`` (top-level and inside
functions alike: a function-level import that dodges a cycle is still a cycle) and mapped to
layers; an import from a higher layer, an import sideways between two packages of one layer
that is not declared below, and any import cycle between modules fail.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from soaes.config.pipeline import PIPELINES
from soaes.recipe.runners import runner_of

SRC = Path(__file__).resolve().parents[1] / "platform" / "src"
PKG = SRC / "soaes"

# Bottom to top. Each name is a subpackage or a top-level module of soaes.
LAYERS: list[set[str]] = [
    # configs, and leaf helpers that import no other soaes module: the Ray connection every
    # runner makes and the Prometheus series every stage publishes.
    {"config", "ray_env", "ray_private", "telemetry", "__init__"},
    {"assets", "models"},
    {"data", "inference"},
    {"train", "eval", "serve"},
    # cluster/ (start scripts, manifests, job submission) only reads configs; it sits with
    # the tools that drive whole runs.
    {"report", "bench", "recipe", "cluster"},
    {"cli"},
]
LAYER = {name: i for i, group in enumerate(LAYERS) for name in group}

# Imports between two packages of the same layer, each with its reason.
SIDEWAYS = {
    ("models", "assets"): "presets resolve handles to fetched assets",
    ("recipe", "bench"): "the recipe runs the serve benchmark as a stage",
    ("bench", "report"): "benchmarks write their tables through the report",
    ("recipe", "report"): "the recipe publishes the report",
    ("ray_env", "ray_private"): "the quiet console names Ray Data's private log handlers",
}

# Modules exempt from the layer and cycle checks while a change moves them between layers.
IN_MOVE: set[str] = set()  # modules exempt while they move between layers (none now)


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _internal_imports(path: Path) -> list[tuple[str, int]]:
    """(imported soaes module, line) of every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from soaes.bench import serve` imports soaes.bench.serve
            names = [node.module] + [
                f"{node.module}.{a.name}"
                for a in node.names
                if (SRC / node.module.replace(".", "/") / f"{a.name}.py").is_file()
            ]
        else:
            continue
        found += [(n, node.lineno) for n in names if n == "soaes" or n.startswith("soaes.")]
    return found


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module(p): _internal_imports(p) for p in sorted(PKG.rglob("*.py"))}


GRAPH = _graph()


def test_every_area_has_a_layer():
    areas = {_area(m) for m in GRAPH}
    assert areas - set(LAYER) == set(), "place these modules/packages in LAYERS"


def layer_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import from a higher layer, or sideways without a declared reason."""
    bad = []
    for module, imports in graph.items():
        if module in IN_MOVE:
            continue
        src = _area(module)
        for target, line in imports:
            dst = _area(target)
            if src == dst or dst == "__init__":
                continue
            if LAYER[dst] > LAYER[src]:
                bad.append(f"{module}:{line} imports {target} (layer {dst} is above {src})")
            elif LAYER[dst] == LAYER[src] and (src, dst) not in SIDEWAYS:
                bad.append(f"{module}:{line} imports {target} (sideways {src} -> {dst})")
    return bad


def test_imports_go_down_the_layers():
    bad = layer_violations(GRAPH)
    assert not bad, "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    edges = {m: {t for t, _ in imps if t in GRAPH and t != m} for m, imps in GRAPH.items()}
    cycles = [c for c in _cycles(edges) if not set(c) & IN_MOVE]
    assert not cycles, cycles


def test_the_contract_catches_what_it_forbids():
    graph = {
        "soaes.data.tokenize": [("soaes.models.presets", 1)],  # down: fine
        "soaes.models.tiny": [("soaes.data.sources", 29)],  # up
        "soaes.train.distill": [("soaes.eval.acceptance", 260)],  # sideways, undeclared
        "soaes.recipe.full": [("soaes.bench.serve", 3)],  # sideways, declared
    }
    assert layer_violations(graph) == [
        "soaes.models.tiny:29 imports soaes.data.sources (layer data is above models)",
        "soaes.train.distill:260 imports soaes.eval.acceptance (sideways train -> eval)",
    ]
    edges = {
        "soaes.a": {"soaes.b"},
        "soaes.b": {"soaes.c"},
        "soaes.c": {"soaes.a"},
        "soaes.d": set(),
    }
    assert _cycles(edges) == [["soaes.a", "soaes.b", "soaes.c"]]


def test_function_level_imports_are_read(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from soaes.cli import main\n    return main\n")
    assert _internal_imports(mod) == [("soaes.cli", 2)]


LONG_OK: set[str] = set()  # files exempt from the length rule (none)
MAX_FUNCTION_LINES = 60


def test_no_function_over_60_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        if rel in LONG_OK:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_registered_runner_takes_its_config(kind):
    entry = PIPELINES[kind]
    runner = runner_of(kind)
    params = list(inspect.signature(runner).parameters.values())
    assert params, f"{entry.runner} takes no config"
    annotation = params[0].annotation
    name = annotation if isinstance(annotation, str) else annotation.__name__
    assert name == entry.config.__name__, f"{entry.runner} takes {name}, not {entry.config}"
    runner_area = _area(runner.__module__)
    assert LAYER[runner_area] <= LAYER["recipe"], f"{entry.runner} sits above the recipe"


def test_unknown_kind_is_named():
    with pytest.raises(KeyError, match="unknown pipeline kind 'nope'"):
        runner_of("nope")
