"""One recipe stage: its typed wiring, its key, its folder, and running it once.

A stage is an ordinary pipeline (its own YAML, the runner of its ``kind``) or the serve
benchmark (``soaes bench serve``). A stage that finished with the same key (its resolved
config hash and the keys of the stages it reads) is skipped, so a failed recipe resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soaes.bench import serve as serve_bench
from soaes.config.full import FullConfig, ServeBenchRef, StageRef
from soaes.config.loader import config_hash, load_config, update_config
from soaes.recipe.runners import run_pipeline
from soaes.serve.deploy import load_serve_config
from soaes.train.metrics import format_duration

log = logging.getLogger(__name__)
DONE = "STAGE_DONE.json"
STARTED = "STAGE_STARTED.json"  # the key a stage was started with (resume only that run)

# Stages that resume from what their folder holds (checkpoints, generated data): output of
# another key must not be resumed. The others rewrite their outputs (data pipelines) or key
# their caches by content (eval's per-model results), so they keep their folder.
RESUMING_KINDS = ("cpt", "sft", "distill")


@dataclass
class Stage:
    """A resolved stage: where it writes, its wiring, and the stages it reads.

    ``wiring`` maps dotted field paths of the stage's config to typed values (strings,
    numbers, config models); for the serve benchmark, field paths of its Serve config file.
    """

    name: str
    ref: StageRef | ServeBenchRef
    wiring: dict[str, Any]
    needs: list[str] = field(default_factory=list)

    def overrides(self) -> list[str]:
        """The wiring as ``key=value`` overrides (the serve benchmark's command line)."""
        return [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in self.wiring.items()]


def stage_key(cfg_hash: str, upstream_keys: list[str]) -> str:
    """Key of a finished stage: its config hash and its inputs' keys."""
    blob = json.dumps([cfg_hash, *upstream_keys])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_done(out: Path) -> dict | None:
    """The ``STAGE_DONE.json`` of a stage folder, or None."""
    try:
        return json.loads((out / DONE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def stage_config(stage: Stage, cfg: FullConfig) -> Any:
    """The validated config of a pipeline stage: its YAML and overrides, then the wiring
    (and the recipe's Ray address) set as typed fields and validated again."""
    ref = stage.ref
    scfg = load_config(ref.pipeline, ref.overrides)
    wiring = dict(stage.wiring)
    if cfg.ray.address:
        wiring["ray.address"] = cfg.ray.address
    return update_config(scfg, wiring, source=f"{ref.pipeline} (recipe stage {stage.name})")


def prepare_stage_dir(out: Path, key: str, clear_stale: bool = True) -> None:
    """Make ``out`` ready for a run of the stage keyed ``key``.

    A run interrupted with the same key is kept: the stage resumes inside it (e.g. training
    from its last checkpoint). With ``clear_stale``, output left by a different key (changed
    config or upstream) is removed, so no stale checkpoint, data or metrics line is mixed
    into the new run.
    """
    started = None
    try:
        started = json.loads((out / STARTED).read_text()).get("key")
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    if clear_stale and out.exists() and started != key:
        log.info("stage output %s was made with key %s, not %s: removing it", out, started, key)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE).unlink(missing_ok=True)
    (out / STARTED).write_text(json.dumps({"key": key, "time": time.time()}))


def _serve_bench_runner(stage: Stage, out: Path) -> tuple[str, Callable[[], dict]]:
    """The serve-benchmark stage as (config hash, runner): the hash covers the resolved Serve
    config (app file + overrides + wiring) and the benchmark's own arguments."""
    ref = stage.ref
    wiring = stage.overrides()
    schema = load_serve_config(ref.app, [*ref.overrides, *wiring])
    blob = json.dumps(
        [schema.model_dump(mode="json"), ref.model_dump(mode="json")], sort_keys=True, default=str
    )
    argv = ref.argv(str(out / "bench.json"), wiring)

    def run() -> dict:
        code = serve_bench.main(argv)
        res = json.loads((out / "bench.json").read_text())
        if code != 0:
            raise RuntimeError(
                f"serve benchmark failed its checks (exit {code}): see {out / 'bench.json'}"
            )
        single, load = res["single_stream"], res["load"]
        return {
            "bench": str(out / "bench.json"),
            "speedup_spec_vs_plain_http": single["speedup_spec_vs_plain_http"],
            "serve_overhead_http_vs_inproc": single["serve_overhead_http_vs_inproc"],
            "identical_outputs_all_four": single["identical_outputs_all_four"],
            "load_by_status": load["by_status"],
        }

    return hashlib.sha256(blob.encode()).hexdigest()[:16], run


def _write_done(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str, ensure_ascii=False))
    tmp.replace(out / DONE)  # written last: a stage without it did not finish


def run_stage(stage: Stage, cfg: FullConfig, keys: dict[str, str]) -> dict:
    """Run one stage unless it finished with the same key; record its key and summary."""
    if isinstance(stage.ref, ServeBenchRef):
        out = Path(cfg.output_dir) / stage.name
        cfg_hash, runner = _serve_bench_runner(stage, out)
        kind, what = "serve_bench", f"soaes bench serve --app {stage.ref.app}"
    else:
        scfg = stage_config(stage, cfg)
        out, cfg_hash = Path(scfg.output_dir), config_hash(scfg)
        kind, what = scfg.kind, stage.ref.pipeline
        runner = lambda: run_pipeline(scfg)  # noqa: E731
    key = stage_key(cfg_hash, [keys[n] for n in stage.needs if n in keys])
    done = read_done(out)
    if done and done.get("key") == key:
        log.info("stage %s: finished with the same key %s, skipped", stage.name, key)
        keys[stage.name] = key
        return {"stage": stage.name, "status": "skipped", "key": key}
    prepare_stage_dir(out, key, clear_stale=kind in RESUMING_KINDS)
    log.info("stage %s: start: %s (kind %s)", stage.name, what, kind)
    t0 = time.time()
    summary = runner()
    log.info("stage %s: done in %s", stage.name, format_duration(time.time() - t0))
    record = {
        "stage": stage.name,
        "status": "ran",
        "key": key,
        "kind": kind,
        "seconds": round(time.time() - t0, 1),
        "summary": summary,
    }
    _write_done(out, record)
    keys[stage.name] = key
    return record
