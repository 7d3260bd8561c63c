"""Every Serve config under serve_apps/ validates against Serve's own schema and soaes' config,
and its args build Ray's LLMConfig; the CLI rejects a bad file before starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from soaes.cli import main
from soaes.serve.app import parse_args
from soaes.serve.deploy import load_serve_config
from soaes.serve.llm import to_llm_config
from soaes.serve.models import resolve_models

ROOT = Path(__file__).resolve().parents[2]
APPS = sorted((ROOT / "serve_apps").glob("*.yaml"))


def test_the_expected_apps_are_shipped():
    names = {p.name for p in APPS}
    assert {"tiny_spec.yaml", "tiny_plain.yaml", "demo_spec.yaml", "gpu_qwen72b_spec.yaml"} <= names


@pytest.mark.parametrize("path", APPS, ids=lambda p: p.name)
def test_serve_config_validates_and_builds_llm_config(path, tmp_path, tiny_paths):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    schema = ServeDeploySchema.model_validate(data)  # what `serve run/deploy` accepts
    assert data["http_options"]["host"] == "127.0.0.1"  # loopback unless opened on purpose
    for app in schema.applications:
        assert app.import_path == "soaes.serve.app:build_app"
        args = dict(app.args)
        spec = args.get("speculation") or {}
        if spec.get("distill_dir"):  # stand in for the distillation step's output
            (tmp_path / "spec_decode.json").write_text(
                json.dumps({"num_speculative_tokens": 3, "draft": str(tiny_paths["draft"])})
            )
            args["speculation"] = {**spec, "distill_dir": str(tmp_path)}
        cfg = parse_args(args)
        models = resolve_models(cfg)
        llm = to_llm_config(cfg, models)
        assert llm.model_id == cfg.model_id
        assert llm.deployment_config["max_queued_requests"] >= 1  # backpressure is bounded
        auto = llm.deployment_config["autoscaling_config"]
        assert 1 <= auto["min_replicas"] <= auto["max_replicas"]
        if spec:
            k = 3 if spec.get("distill_dir") else spec["num_speculative_tokens"]
            assert llm.engine_kwargs["speculative_config"]["num_speculative_tokens"] == k
        assert llm.accelerator_config.kind == cfg.accelerator


def test_plain_variant_differs_from_spec_only_in_speculation():
    def args(name):
        return yaml.safe_load((ROOT / "serve_apps" / name).read_text())["applications"][0]["args"]

    spec, plain = args("tiny_spec.yaml"), args("tiny_plain.yaml")
    assert spec.pop("speculation") and plain.pop("speculation") is None
    spec.pop("model_id"), plain.pop("model_id")
    spec.pop("api_key_env", None), plain.pop("api_key_env", None)
    assert spec == plain


def test_bad_file_is_rejected_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    body = yaml.safe_load((ROOT / "serve_apps" / "tiny_spec.yaml").read_text())
    body["applications"][0]["args"]["deployment"]["max_queued_requests"] = 0
    bad.write_text(yaml.safe_dump(body))
    with pytest.raises(
        Exception,
        match=r"applications.0 \(soaes-tiny\): "
        r"args.deployment.max_queued_requests",
    ):
        load_serve_config(bad)
    assert main(["serve", "up", str(bad)]) == 2  # fails before any Ray/Serve work
    assert "max_queued_requests" in capsys.readouterr().err
    assert main(["serve", "up", str(tmp_path / "missing.yaml")]) == 2


def test_overrides_apply_to_the_file(tmp_path):
    schema = load_serve_config(
        ROOT / "serve_apps" / "tiny_spec.yaml",
        ["http_options.port=9123", "applications.0.args.api_key_env=SOAES_API_KEY"],
    )
    assert schema.http_options.port == 9123
    assert parse_args(schema.applications[0].args).api_key_env == "SOAES_API_KEY"
