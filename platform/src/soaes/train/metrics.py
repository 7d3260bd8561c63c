"""Training observability: cross-rank sums, metrics.jsonl, progress lines, the loss curve PNG.

Records in ``metrics.jsonl`` (one JSON object per line, rank 0 writes):

- ``{"event": "train", "step", "loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", …}``
- ``{"event": "eval", "step", "<set>/loss", "<set>/ppl", …}``
- ``{"event": "start" | "resume" | "checkpoint" | "end", "step", …}``

Checkpoint and end records (and every ``logging.report_every_steps``-th train record) go to
``ray.train.report``; rank 0 publishes each ``train`` record to soaes' Prometheus gauges
(:func:`soaes.telemetry.publish_train_step`, tagged by
:meth:`soaes.train.plan.RunInfo.metric_tags`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def all_reduce_sum(values: Any, device: Any = "cpu") -> list[float]:
    """Sum a few floats (a list, or a 1-D tensor on ``device``) over all ranks: one small
    collective, and the one host sync of reading the result; every rank must call."""
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record (flushed) to a JSONL file."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSONL file (missing file: none)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def perplexity(loss: float) -> float:
    """exp(loss), capped to stay finite in JSON."""
    return math.exp(min(loss, 50.0))


def mfu(
    tokens_per_s: float, n_params: int, n_devices: int, peak_tflops: float | None
) -> float | None:
    """Model FLOPs utilisation (6·N FLOPs per trained token), or None without a peak figure."""
    if not peak_tflops:
        return None
    return 6.0 * n_params * tokens_per_s / (n_devices * peak_tflops * 1e12)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: a short human duration."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(rec: dict[str, Any], total_steps: int) -> str:
    """One human line per log interval: position, loss, throughput, time left."""
    eta = rec["step_time_s"] * max(total_steps - rec["step"], 0)
    parts = [
        f"step {rec['step']}/{total_steps}",
        f"loss {rec['loss']:.4f}",
        f"{rec['tokens_per_s']:.0f} tok/s",
        f"{rec['step_time_s']:.2f} s/step",
        f"eta {format_duration(eta)}",
        f"lr {rec['lr']:.2e}",
        f"gnorm {rec['grad_norm']:.3f}",
    ]
    if rec.get("mfu") is not None:
        parts.append(f"mfu {rec['mfu']:.1%}")
    return " | ".join(parts)


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "") -> Path | None:
    """Train loss (and every eval set's loss) against step, as a PNG; None without data or
    without matplotlib (e.g. a minimal GPU image: the figures stay in metrics.jsonl)."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_jsonl(metrics_path)
    train = {r["step"]: r["loss"] for r in recs if r.get("event") == "train"}  # last attempt wins
    evals: dict[str, dict[int, float]] = {}
    for r in recs:
        if r.get("event") == "eval":
            for k, v in r.items():
                if k.endswith("/loss"):
                    evals.setdefault(k, {})[r["step"]] = v
    if not train and not evals:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        steps = sorted(train)
        ax.plot(steps, [train[s] for s in steps], label="train loss")
    for name, pts in sorted(evals.items()):
        steps = sorted(pts)
        ax.plot(steps, [pts[s] for s in steps], marker="o", label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)
