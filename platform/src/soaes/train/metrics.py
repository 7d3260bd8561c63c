"""Training observability: cross-rank sums, metrics.jsonl, progress lines, the loss curve PNG.

Records in ``metrics.jsonl`` (one JSON object per line, rank 0 writes):

- ``{"event": "train", "step", "loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", …}``
- ``{"event": "eval", "step", "<set>/loss", "<set>/ppl", …}``
- ``{"event": "start" | "resume" | "checkpoint" | "end", "step", …}``

The same train/eval dicts go to ``ray.train.report`` so the Ray dashboard shows them, and
rank 0 publishes each ``train`` record to soaes' Prometheus gauges
(:func:`soaes.telemetry.publish_train_step`, tagged by :func:`metric_tags`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def all_reduce_sum(values: list[float], device: Any = "cpu") -> list[float]:
    """Sum a few floats over all ranks (one small collective; every rank must call)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
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


def progress_line(rec: dict[str, Any], total_steps: int) -> str:
    """One human line per log interval."""
    parts = [
        f"step {rec['step']}/{total_steps}",
        f"loss {rec['loss']:.4f}",
        f"lr {rec['lr']:.2e}",
        f"gnorm {rec['grad_norm']:.3f}",
        f"{rec['tokens_per_s']:.0f} tok/s",
        f"{rec['step_time_s']:.2f} s/step",
    ]
    if rec.get("mfu") is not None:
        parts.append(f"mfu {rec['mfu']:.1%}")
    return " | ".join(parts)


def metric_tags(meta: dict[str, Any]) -> tuple[str, str]:
    """``(run, stage)`` tags of soaes' Prometheus training gauges, from a plan's ``meta``.

    ``run`` is the pipeline's name; ``stage`` is ``cpt``, ``distill`` or the SFT stage's
    name (an SFT plan's ``meta["name"]`` is ``<pipeline>/<stage>``: the stage is cut off).
    """
    name = str(meta.get("name", "train"))
    if "stage" in meta:
        stage = str(meta["stage"])
        return name.removesuffix(f"/{stage}"), stage
    return name, str(meta.get("kind", "train"))


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "") -> Path | None:
    """Train loss (and every eval set's loss) against step, as a PNG; None without data."""
    import matplotlib

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
