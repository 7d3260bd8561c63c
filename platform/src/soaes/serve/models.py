"""Turn a Serve app config's model references into what vLLM loads, and read the measured k.

Model references are preset handles (``tiny/target``, ``smollm2/base``), pipeline output
folders, or hub ids / mounted paths that only exist on a cluster (passed through unchanged).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from soaes.config.serve import ServeAppConfig

log = logging.getLogger(__name__)

SPEC_DECODE_FILE = "spec_decode.json"  # written by the distillation step (soaes.eval.acceptance)


class ServeConfigError(ValueError):
    """A Serve app config that cannot be resolved: the message names the field."""


@dataclass(frozen=True)
class ResolvedModels:
    """What one replica loads: target, optional draft (or EAGLE-3 head), k and method."""

    target: str
    tokenizer: str | None
    draft: str | None
    num_speculative_tokens: int | None
    method: str = "draft_model"


def resolve_model(ref: str, field: str) -> str:
    """Resolve a model reference to a loadable folder or id.

    A preset handle goes through :func:`soaes.models.presets.resolve`; an existing local
    folder must hold ``config.json`` itself or in its ``hf/`` export subfolder (a training
    pipeline's output); anything else (a hub id, a path mounted only on the cluster's
    nodes) is passed through unchanged, as :class:`soaes.config.model.ModelRef` documents.

    Raises:
        ServeConfigError: an unknown preset part, or a local folder without a model in it
            (``field`` is named).
    """
    from soaes.models.presets import PRESETS, resolve

    path = Path(ref).expanduser()
    if ref.split("/", 1)[0] in PRESETS and not path.exists():
        try:
            return resolve(ref)
        except (ValueError, OSError) as e:
            raise ServeConfigError(f"{field}: cannot resolve preset handle {ref!r}: {e}") from e
    if not path.exists():
        log.warning(
            "%s: %s is not a local path; passing it to vLLM as a hub id / cluster path", field, ref
        )
        return ref
    for candidate in (path, path / "hf"):
        if (candidate / "config.json").is_file():
            return str(candidate.resolve())
    raise ServeConfigError(
        f"{field}: {ref} has no config.json (nor hf/config.json): expected an "
        "HF export folder, a pipeline output holding one, or a preset handle"
    )


def read_spec_decode(distill_dir: str) -> dict:
    """Read ``<distill_dir>/spec_decode.json`` ({"num_speculative_tokens": k, "draft": …}).

    Raises:
        ServeConfigError: missing file, bad JSON or a k that is not a positive integer.
    """
    path = Path(distill_dir).expanduser() / SPEC_DECODE_FILE
    field = "speculation.distill_dir"
    if not path.is_file():
        raise ServeConfigError(
            f"{field}: {path} not found; run the distillation step first or "
            "set speculation.num_speculative_tokens instead"
        )
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ServeConfigError(f"{field}: {path} is not valid JSON: {e}") from e
    k = body.get("num_speculative_tokens") if isinstance(body, dict) else None
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 16:
        raise ServeConfigError(
            f"{field}: {path}: num_speculative_tokens must be an integer in 1..16, got {k!r}"
        )
    return body


def resolve_models(cfg: ServeAppConfig) -> ResolvedModels:
    """Resolve target, tokenizer, draft, k and method of a Serve app config.

    The measured k in ``spec_decode.json`` wins over ``num_speculative_tokens``; the
    configured draft and method win over the ones recorded there.
    """
    target = resolve_model(cfg.target, "target")
    tokenizer = resolve_model(cfg.tokenizer, "tokenizer") if cfg.tokenizer else None
    spec = cfg.speculation
    if spec is None:
        return ResolvedModels(target, tokenizer, None, None)
    k, draft, method = spec.num_speculative_tokens, spec.draft, spec.method
    if spec.distill_dir:
        body = read_spec_decode(spec.distill_dir)
        k = body["num_speculative_tokens"]
        draft = draft or body.get("draft")
        method = method or body.get("method")
        if not draft:
            raise ServeConfigError("speculation.draft: not set and spec_decode.json names none")
    method = method or "draft_model"
    if method not in ("draft_model", "eagle3"):
        raise ServeConfigError(f"speculation.method: {method!r} is not draft_model or eagle3")
    return ResolvedModels(target, tokenizer, resolve_model(draft, "speculation.draft"), k, method)
