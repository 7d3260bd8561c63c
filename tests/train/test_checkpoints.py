"""Atomic checkpoints: ``latest`` only ever names a complete checkpoint, even when a save dies
half-way (in this process or by a hard process exit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from soaes.train import checkpoints as ckpt


def _save(root: Path, step: int, keep_last: int = 2, payload: bytes = b"x") -> Path:
    tag = ckpt.tag_for(step)
    part = ckpt.begin_save(root, tag)
    (part / "mp_rank_00_model_states.pt").write_bytes(payload)
    return ckpt.commit_save(root, tag, {"step": step, "micro_index": step}, keep_last)


def test_commit_publishes_and_moves_latest(tmp_path):
    assert ckpt.resolve_latest(tmp_path) is None
    _save(tmp_path, 4)
    path, manifest = ckpt.resolve_latest(tmp_path)
    assert path.name == "step_00000004" and manifest["step"] == 4
    assert (tmp_path / "latest").read_text() == "step_00000004"  # DeepSpeed's own format


def test_interrupted_save_leaves_latest_on_previous(tmp_path):
    _save(tmp_path, 4)
    part = ckpt.begin_save(tmp_path, ckpt.tag_for(8))
    (part / "half_written.pt").write_bytes(b"\0" * 10)  # crash here: no commit
    path, manifest = ckpt.resolve_latest(tmp_path)
    assert path.name == "step_00000004" and manifest["step"] == 4
    assert ckpt.complete_tags(tmp_path) == ["step_00000004"]
    # The next save of the same step starts from a clean folder and cleans up.
    _save(tmp_path, 8)
    assert ckpt.resolve_latest(tmp_path)[0].name == "step_00000008"
    assert not (tmp_path / ckpt.PARTIAL).exists()


def test_torn_pointer_falls_back_to_newest_complete(tmp_path):
    _save(tmp_path, 4)
    _save(tmp_path, 8)
    (tmp_path / "step_00000012").mkdir()  # a folder without manifest (broken)
    (tmp_path / "latest").write_text("step_00000012")
    path, manifest = ckpt.resolve_latest(tmp_path)
    assert path.name == "step_00000008" and manifest["step"] == 8


def test_keep_last_prunes_oldest(tmp_path):
    for step in (2, 4, 6, 8):
        _save(tmp_path, step, keep_last=2)
    assert ckpt.complete_tags(tmp_path) == ["step_00000006", "step_00000008"]


def test_process_killed_mid_save_never_breaks_latest(tmp_path):
    """A separate process saves step 8 and is killed (os._exit) after writing half of it."""
    _save(tmp_path, 4)
    code = f"""
import os
from pathlib import Path
from soaes.train import checkpoints as ckpt
part = ckpt.begin_save({str(tmp_path)!r}, ckpt.tag_for(8))
with open(part / "big.pt", "wb") as f:
    f.write(b"\\0" * 4_000_000)
    f.flush()
    os._exit(9)  # killed mid-save
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert (tmp_path / ckpt.PARTIAL / "step_00000008" / "big.pt").exists()
    path, manifest = ckpt.resolve_latest(tmp_path)
    assert path.name == "step_00000004" and manifest["step"] == 4


def test_ray_marker_round_trip(tmp_path):
    target = _save(tmp_path / "ck", 4)
    ckpt.write_ray_marker(tmp_path / "m", target, {"step": 4})
    body = ckpt.read_ray_marker(tmp_path / "m")
    assert body["step"] == 4 and Path(body["path"]) == target.resolve()
    assert ckpt.read_ray_marker(tmp_path) is None
    assert json.loads((target / ckpt.MANIFEST).read_text())["tag"] == "step_00000004"
