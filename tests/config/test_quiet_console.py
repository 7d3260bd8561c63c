"""The quiet console: third-party progress and INFO lines off the terminal, unless asked."""

from __future__ import annotations

import yaml

from soaes.ray_env import QUIET_CONSOLE_ENV, VERBOSE_ENV, keep_worker_line, quiet_console
from soaes.ray_private import RAY_DATA_LOG_CLASSES


def _clear(monkeypatch):
    for k in [*QUIET_CONSOLE_ENV, "RAY_DATA_LOGGING_CONFIG", VERBOSE_ENV]:
        monkeypatch.delenv(k, raising=False)


def test_sets_env_and_ray_data_console_at_error(tmp_path, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # the user's own choice stays
    done = quiet_console(tmp_path)
    assert "TQDM_DISABLE" not in done and done["VLLM_LOGGING_LEVEL"] == "ERROR"
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


def test_quiet_console_keeps_soaes_worker_lines_and_errors_only():
    kept = [
        "[cpt_demo] step 5/20 | loss 3.1913 | 184 tok/s | 11.14 s/step | eta 2m47s",
        "[sft_progressive_demo/stage2_domain] done: step 31/31, 4m47s since submit",
        "Traceback (most recent call last):",
        "RuntimeError: CUDA out of memory",
    ]
    dropped = [  # from a real `make demo` terminal (2026-12-05)
        "[2026-12-05 16:56:08,369 E 9892 9925] core_worker.cc:2465: Actor with class name: ...",
        "(MainProcess pid=9280) WARNING 12-05 16:54:45 [vllm.py:1703] Enforce eager set, ...",
        "Progress bars disabled. To enable, set `ray.data.DataContext.get_current()...`.",
        "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully",
        "[W1205 16:54:46.892623472 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy",
        "/work/main/.venv/lib/python3.11/site-packages/torch/distributed/c10d_logger.py:83: "
        "FutureWarning: `torch.distributed.all_gather_into_tensor` is deprecated.",
        "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00,  2.98it/s]",
        "WARNING: 8 PYTHON worker processes have been started on node: 6ea7af35",
    ]
    assert all(map(keep_worker_line, kept))
    assert not any(map(keep_worker_line, dropped))
