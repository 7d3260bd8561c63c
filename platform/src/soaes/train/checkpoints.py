"""Atomic DeepSpeed checkpoints with a ``latest`` pointer, and resume.

Layout of ``<run>/checkpoints/``::

    .partial/step_00000040/   being written (every rank writes its shards here)
    step_00000040/            complete: DeepSpeed state + soaes_checkpoint.json (written last)
    latest                    text file naming the newest complete tag (DeepSpeed's format)

A save is: every rank writes into ``.partial/<tag>``; barrier; rank 0 writes the manifest,
renames the folder into place, then replaces ``latest`` (temp file + ``os.replace``), then
prunes old tags. A crash at any point leaves ``latest`` on the previous complete checkpoint;
:func:`resolve_latest` also checks the manifest, so a hand-edited or torn pointer falls back
to the newest complete checkpoint. ``latest`` uses DeepSpeed's format, so
``engine.load_checkpoint(<run>/checkpoints)`` and ``zero_to_fp32.py`` work on it directly.

The filesystem helpers are pure (unit-tested); :func:`save_engine` / :func:`load_engine`
wrap them around a DeepSpeed engine for use inside Ray Train workers (CPT, SFT and
distillation all call these two).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "soaes_checkpoint.json"
LATEST = "latest"
PARTIAL = ".partial"
RAY_MARKER = "soaes_checkpoint_ref.json"


def tag_for(step: int) -> str:
    """Checkpoint folder name of an optimizer step (sortable)."""
    return f"step_{step:08d}"


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def begin_save(ckpt_dir: str | Path, tag: str) -> Path:
    """Rank 0: create an empty ``.partial/<tag>`` (removing a stale one) and return it."""
    part = Path(ckpt_dir) / PARTIAL / tag
    if part.exists():
        shutil.rmtree(part)
    part.mkdir(parents=True)
    return part


def commit_save(ckpt_dir: str | Path, tag: str, state: dict[str, Any], keep_last: int) -> Path:
    """Rank 0, after every rank finished writing: publish ``.partial/<tag>`` as complete.

    Order matters: manifest inside the folder, rename into place, then move ``latest``,
    then prune. Each step is atomic on a POSIX filesystem.

    Args:
        ckpt_dir: the run's ``checkpoints/`` folder.
        tag: folder name (``tag_for(step)``).
        state: JSON-able training state stored in the manifest (step, data position, …).
        keep_last: complete checkpoints to keep (older ones are deleted).

    Returns:
        The published checkpoint folder.
    """
    ckpt_dir = Path(ckpt_dir)
    part, final = ckpt_dir / PARTIAL / tag, ckpt_dir / tag
    _fsync_write(part / MANIFEST, json.dumps({"tag": tag, **state}, indent=1))
    if final.exists():  # an older save of the same step (a resumed run re-saving it)
        shutil.rmtree(final)
    os.rename(part, final)
    write_latest(ckpt_dir, tag)
    prune(ckpt_dir, keep_last)
    return final


def write_latest(ckpt_dir: str | Path, tag: str) -> None:
    """Point ``latest`` at ``tag`` atomically (temp file in the same folder + os.replace)."""
    fd, tmp = tempfile.mkstemp(prefix=".latest.", dir=ckpt_dir)
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(tag)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, Path(ckpt_dir) / LATEST)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a checkpoint folder, or None when it is not a complete checkpoint."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def complete_tags(ckpt_dir: str | Path) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    root = Path(ckpt_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.glob("step_*") if read_manifest(p) is not None)


def resolve_latest(ckpt_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from: ``latest`` if it names a complete one, else the newest
    complete one, else None."""
    root = Path(ckpt_dir)
    try:
        tag = (root / LATEST).read_text(encoding="utf-8").strip()
    except OSError:
        tag = ""
    manifest = read_manifest(root / tag) if tag else None
    if manifest is None:
        tags = complete_tags(root)
        if not tags:
            return None
        tag = tags[-1]
        manifest = read_manifest(root / tag)
    return root / tag, manifest  # type: ignore[return-value]


def prune(ckpt_dir: str | Path, keep_last: int) -> list[str]:
    """Delete all but the ``keep_last`` newest complete checkpoints (never the ``latest`` one)
    and any stale ``.partial`` folders; returns the deleted tags."""
    root = Path(ckpt_dir)
    latest = resolve_latest(root)
    keep = set(complete_tags(root)[-keep_last:])
    if latest:
        keep.add(latest[0].name)
    removed = []
    for p in root.glob("step_*"):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    shutil.rmtree(root / PARTIAL, ignore_errors=True)
    return sorted(removed)


def save_engine(
    engine: Any, ckpt_dir: str | Path, step: int, state: dict[str, Any], keep_last: int
) -> Path:
    """Every rank: save a DeepSpeed engine atomically as ``checkpoints/<tag_for(step)>``.

    Collective (all ranks must call it). Returns the published folder on every rank.
    """
    import torch.distributed as dist

    tag, rank = tag_for(step), dist.get_rank()
    if rank == 0:
        begin_save(ckpt_dir, tag)
    dist.barrier()
    # save_latest=False: soaes moves ``latest`` itself, only once the folder is complete.
    engine.save_checkpoint(
        str(Path(ckpt_dir) / PARTIAL), tag=tag, client_state=state, save_latest=False
    )
    dist.barrier()
    if rank == 0:
        commit_save(ckpt_dir, tag, state, keep_last)
    dist.barrier()
    return Path(ckpt_dir) / tag


def load_engine(engine: Any, path: str | Path) -> dict[str, Any]:
    """Every rank: restore engine, optimizer and scheduler from a complete checkpoint folder;
    returns the manifest's training state."""
    path = Path(path)
    load_path, client_state = engine.load_checkpoint(str(path.parent), tag=path.name)
    if load_path is None:
        raise RuntimeError(f"{path}: DeepSpeed could not load this checkpoint")
    manifest = read_manifest(path)
    if manifest is None:
        raise RuntimeError(f"{path}: not a complete soaes checkpoint ({MANIFEST} missing)")
    return manifest


def write_ray_marker(folder: str | Path, ckpt_path: str | Path, state: dict[str, Any]) -> Path:
    """A small folder reported to Ray Train as the checkpoint: it points at the DeepSpeed
    state (which stays in the run folder instead of being copied into Ray's storage)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"path": str(Path(ckpt_path).resolve()), **state}
    (folder / RAY_MARKER).write_text(json.dumps(body, indent=1), encoding="utf-8")
    return folder


def read_ray_marker(folder: str | Path) -> dict[str, Any] | None:
    """The body of a Ray checkpoint marker folder, or None if it is not one."""
    try:
        return json.loads((Path(folder) / RAY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
