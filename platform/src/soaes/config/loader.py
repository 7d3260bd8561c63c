"""Load a pipeline YAML, apply ``key=value`` overrides, validate, hash and save it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from soaes.config.pipeline import PIPELINE_KINDS, PipelineConfig


class ConfigError(ValueError):
    """An invalid config: the message names the offending field path."""


_ADAPTER: TypeAdapter = TypeAdapter(PipelineConfig)
T = TypeVar("T", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-parsed value.

    Args:
        text: the override as typed on the command line.

    Returns:
        The dotted path as a list and the value parsed as YAML (so ``3`` is an int,
        ``[a, b]`` a list, ``null`` None).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: empty key segment in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from e
    return parts, value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with every ``key.path=value`` override set.

    List items are addressed by index (``sources.0.weight=2``).
    """
    data = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                node = node[_index(part, where, len(node))]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {text!r}: {where} is not a mapping or list")
        last = parts[-1]
        if isinstance(node, list):
            node[_index(last, ".".join(parts), len(node))] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {text!r}: parent of {last!r} is not a mapping")
    return data


def _index(part: str, where: str, n: int) -> int:
    if not part.lstrip("-").isdigit() or not -n <= int(part) < n:
        raise ConfigError(f"override path {where}: list index out of range (len {n})")
    return int(part)


def format_validation_error(err: ValidationError, source: str) -> str:
    """Render pydantic errors as ``source: field.path: message`` lines."""
    lines = []
    for e in err.errors():
        # Drop the discriminator tag pydantic inserts as the first path element.
        loc = [str(p) for p in e["loc"]]
        if loc and loc[0] in _kinds():
            loc = loc[1:]
        path = ".".join(loc) or "<root>"
        lines.append(f"{source}: {path}: {e['msg']}")
    return "\n".join(lines)


def _kinds() -> set[str]:
    return set(PIPELINE_KINDS)


def validate_config(data: dict, source: str = "<config>") -> PipelineConfig:
    """Validate plain data into a pipeline config or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a pipeline YAML, apply overrides and validate it.

    A run folder's ``config.resolved.yaml`` loads too (its ``config_hash`` line, written by
    :func:`save_resolved`, is informational and dropped), so a finished run can be re-run or
    inspected from exactly what it ran with.

    Args:
        path: the pipeline YAML file.
        overrides: ``key.path=value`` strings applied before validation.

    Raises:
        ConfigError: the file is missing, not YAML, or fails validation (field named).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if isinstance(data, dict):
        data.pop("config_hash", None)
    data = apply_overrides(data or {}, overrides or [])
    return validate_config(data, source=str(path))


def update_config(cfg: T, updates: dict[str, Any], source: str = "<update>") -> T:
    """A copy of a validated config with typed values set at dotted field paths, re-validated.

    This is how the recipe wires stages together (``{"model.path": ..., "models": [...]}``):
    the values are Python objects (strings, numbers, config models), not override strings.

    Args:
        cfg: a validated config.
        updates: dotted field path -> new value (list items by index: ``sources.0.weight``).
        source: names the caller in errors (e.g. ``stage eval``).

    Raises:
        ConfigError: a path names no field, or the result fails validation (field named).
    """
    data = cfg.model_dump()
    for path, value in updates.items():
        parts = path.split(".")
        node: Any = data
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list) and part.lstrip("-").isdigit():
                key: Any = _index(part, where, len(node))
            elif isinstance(node, dict) and part in node:
                key = part
            else:
                raise ConfigError(f"{source}: {where}: no such field in {type(cfg).__name__}")
            if i == len(parts) - 1:
                node[key] = value
            else:
                node = node[key]
    try:
        return type(cfg).model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def config_dict(cfg: Any) -> dict:
    """A JSON-safe dict of a config (paths as strings)."""
    return json.loads(cfg.model_dump_json())


def config_hash(cfg: Any) -> str:
    """Stable short hash of a config's content (used to skip finished stages)."""
    blob = json.dumps(config_dict(cfg), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_resolved(cfg: Any, out_dir: str | Path) -> Path:
    """Write the resolved config next to a pipeline's outputs as ``config.resolved.yaml``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "config.resolved.yaml"
    body = {"config_hash": config_hash(cfg), **config_dict(cfg)}
    tmp = target.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.replace(target)
    return target
