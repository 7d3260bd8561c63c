"""HF checkpoint I/O: export a (DeepSpeed-trained) model as safetensors, load it back.

An export folder holds ``model.safetensors`` (or shards), ``config.json``,
``generation_config.json``, the tokenizer files and ``SOAES_EXPORT.json`` (written last:
step, source, dtype). transformers and vLLM load it directly. Exports are published
atomically (temp folder, then rename), so a reader never sees half a model.

In a training worker (any ZeRO stage, all ranks)::

    sd = gather_state_dict(engine)          # collective; full weights on rank 0, None elsewhere
    if rank == 0:
        export_hf(engine.module, sd, out_dir, tokenizer_src, meta={...})
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

EXPORT_MARKER = "SOAES_EXPORT.json"


def gather_state_dict(engine: Any) -> dict[str, Any] | None:
    """Full (unpartitioned) weights of a DeepSpeed engine's model on rank 0, on CPU.

    Collective: every rank must call it. ZeRO-3 gathers one layer at a time
    (``stage3_gather_16bit_weights_on_model_save`` is set by ``build_ds_config``); ZeRO 0-2
    keep full weights on every rank, so rank 0 just copies its own.
    """
    import torch.distributed as dist

    if engine.zero_optimization_partition_weights():
        sd = engine._zero3_consolidated_16bit_state_dict()
    else:
        sd = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
    return sd if dist.get_rank() == 0 else None


def _publish(tmp: Path, out: Path) -> None:
    """Replace ``out`` with ``tmp`` so that ``out`` is always either the old or the new export."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old.{os.getpid()}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def export_hf(
    model: Any,
    state_dict: dict[str, Any],
    out_dir: str | Path,
    tokenizer_src: str | None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write an HF safetensors folder from a model (for its config) and its full weights.

    Args:
        model: the HF model (``engine.module``); only its config and class are used.
        state_dict: full weights (from :func:`gather_state_dict`).
        out_dir: the export folder, replaced atomically.
        tokenizer_src: folder/handle of the tokenizer to save alongside; None: none.
        meta: extra JSON-able facts stored in ``SOAES_EXPORT.json``.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; exports are read by servers and users
    try:
        model.config.use_cache = True  # training turned it off; inference wants it
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        if tokenizer_src:
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(tmp)
        dtype = str(next(iter(state_dict.values())).dtype).replace("torch.", "")
        body = {"dtype": dtype, "num_tensors": len(state_dict), **(meta or {})}
        (tmp / EXPORT_MARKER).write_text(json.dumps(body, indent=1), encoding="utf-8")
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_export(path: str | Path) -> bool:
    """True when ``path`` is a complete soaes HF export."""
    return (Path(path) / EXPORT_MARKER).is_file()


def export_meta(path: str | Path) -> dict[str, Any]:
    """The ``SOAES_EXPORT.json`` of an export folder."""
    return json.loads((Path(path) / EXPORT_MARKER).read_text(encoding="utf-8"))


def link_export(target: str | Path, link: str | Path) -> Path:
    """Make ``link`` a relative symlink to the export ``target`` (atomically replaced);
    e.g. a progressive SFT run's ``hf`` -> ``<last stage>/hf``."""
    link = Path(link)
    rel = os.path.relpath(Path(target), link.parent)
    tmp = link.with_name(f".{link.name}.lnk.{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(rel, tmp)
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)
    return link


def load_hf(path: str | Path, dtype: str = "float32", trust_remote_code: bool = False):
    """``(model, tokenizer)`` of an HF folder, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
    )
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    return model.eval(), tok
