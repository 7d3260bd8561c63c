"""Serve app config: validation, model/k resolution from spec_decode.json, LLMConfig mapping."""

from __future__ import annotations

import json

import pytest

from soaes.config.serve import ServeAppConfig
from soaes.serve.app import api_key_digest, parse_args
from soaes.serve.guard import key_digest
from soaes.serve.llm import llm_config_dict, speculative_config, to_llm_config
from soaes.serve.models import (
    ResolvedModels,
    ServeConfigError,
    read_spec_decode,
    resolve_model,
    resolve_models,
)


def _args(**over):
    base = {
        "model_id": "m",
        "target": "org/target",
        "speculation": {"draft": "org/draft", "num_speculative_tokens": 3},
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"engine_kwargs": {"speculative_config": {}}}, "engine_kwargs"),
        ({"engine_kwargs": {"model": "x"}}, "set by soaes' own fields"),
        ({"speculation": {"draft": "d"}}, "num_speculative_tokens or distill_dir"),
        ({"speculation": {"num_speculative_tokens": 2}}, "set draft"),
        ({"speculation": {"draft": "d", "num_speculative_tokens": 0}}, "num_speculative_tokens"),
        ({"deployment": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}}, "min_replicas"),
        ({"deployment": {"max_ongoing_requests": 2}}, "target_ongoing_requests"),
        ({"api_key_env": "sk-live-123"}, "not an environment variable name"),
        ({"tensor_parallel_size": 2}, "needs accelerator: gpu"),
        ({"accelerator_type": "H100"}, "needs accelerator: gpu"),
        ({"max_tokens": 5}, "args.max_tokens: Extra inputs are not permitted"),
    ],
)
def test_bad_args_fail_naming_the_field(over, words):
    with pytest.raises(ServeConfigError, match=None) as e:
        parse_args(_args(**over))
    assert words in str(e.value) and str(e.value).startswith("args.")


def _spec_dir(tmp_path, body):
    (tmp_path / "spec_decode.json").write_text(json.dumps(body))
    return str(tmp_path)


def test_measured_k_and_draft_come_from_spec_decode_json(tmp_path):
    draft = tmp_path / "draft"
    draft.mkdir()
    (draft / "config.json").write_text("{}")
    d = _spec_dir(tmp_path, {"num_speculative_tokens": 5, "draft": str(draft)})
    cfg = parse_args(_args(speculation={"distill_dir": d, "num_speculative_tokens": 2}))
    got = resolve_models(cfg)
    assert got.num_speculative_tokens == 5 and got.draft == str(draft.resolve())
    # A configured draft wins over the recorded one; k still comes from the measurement.
    cfg = parse_args(_args(speculation={"distill_dir": d, "draft": "org/other"}))
    assert resolve_models(cfg).draft == "org/other"
    assert resolve_models(cfg).num_speculative_tokens == 5


def test_measured_method_comes_from_spec_decode_json(tmp_path):
    head = tmp_path / "eagle3"
    head.mkdir()
    (head / "config.json").write_text("{}")
    d = _spec_dir(tmp_path, {"num_speculative_tokens": 3, "draft": str(head), "method": "eagle3"})
    cfg = parse_args(_args(speculation={"distill_dir": d}))
    got = resolve_models(cfg)
    assert got.method == "eagle3" and got.num_speculative_tokens == 3
    assert speculative_config(cfg, got) == {
        "method": "eagle3",
        "model": str(head.resolve()),
        "num_speculative_tokens": 3,
    }
    # A configured method wins; a file without one (older runs) means draft_model.
    cfg = parse_args(_args(speculation={"distill_dir": d, "method": "draft_model"}))
    assert resolve_models(cfg).method == "draft_model"
    d = _spec_dir(tmp_path, {"num_speculative_tokens": 2, "draft": str(head)})
    assert resolve_models(parse_args(_args(speculation={"distill_dir": d}))).method == "draft_model"
    with pytest.raises(ServeConfigError, match="method"):
        parse_args(_args(speculation={"draft": "d", "num_speculative_tokens": 2, "method": "x"}))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "not found"),
        ("{not json", "not valid JSON"),
        ('{"num_speculative_tokens": 0}', "1..16"),
        ('{"num_speculative_tokens": "3"}', "integer"),
        ('{"num_speculative_tokens": true}', "integer"),
    ],
)
def test_bad_spec_decode_json_is_a_clear_error(tmp_path, content, words):
    if content is not None:
        (tmp_path / "spec_decode.json").write_text(content)
    with pytest.raises(ServeConfigError, match="speculation.distill_dir") as e:
        read_spec_decode(str(tmp_path))
    assert words in str(e.value)


def test_pipeline_output_folder_resolves_to_its_hf_export(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path), "target") == str((tmp_path / "hf").resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServeConfigError, match=r"^target: .* has no config.json"):
        resolve_model(str(empty), "target")
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct", "target") == "Qwen/Qwen2.5-7B-Instruct"


def test_gpu_layout_puts_target_and_draft_in_one_placement_group():
    cfg = parse_args(
        _args(
            accelerator="gpu",
            tensor_parallel_size=4,
            cpus_per_worker=8,
            accelerator_type="H100",
            kv_cache_space_gib=None,
            speculation={
                "draft": "d/d",
                "num_speculative_tokens": 4,
                "draft_tensor_parallel_size": 1,
            },
        )
    )
    models = ResolvedModels("t/t", None, "d/d", 4)
    body = llm_config_dict(cfg, models)
    assert body["placement_group_config"] == {
        "bundles": [{"CPU": 8.0, "GPU": 1}] * 4,
        "strategy": "STRICT_PACK",
    }
    assert body["engine_kwargs"]["tensor_parallel_size"] == 4
    assert body["engine_kwargs"]["speculative_config"] == {
        "method": "draft_model",
        "model": "d/d",
        "num_speculative_tokens": 4,
        "draft_tensor_parallel_size": 1,
    }
    assert "runtime_env" not in body  # no CPU KV-cache variable on GPU
    llm = to_llm_config(cfg, models)  # Ray's own LLMConfig accepts it
    assert llm.accelerator_config.kind == "gpu" and llm.accelerator_type == "H100"


def test_cpu_layout_and_limits_reach_the_llm_config():
    cfg = parse_args(
        _args(
            kv_cache_space_gib=2,
            deployment={
                "max_ongoing_requests": 4,
                "max_queued_requests": 6,
                "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2},
            },
        )
    )
    llm = to_llm_config(cfg, ResolvedModels("t/t", None, None, None))
    assert llm.accelerator_config.kind == "cpu"
    assert llm.runtime_env == {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "2"}}
    assert "speculative_config" not in llm.engine_kwargs
    d = llm.deployment_config
    assert (d["max_ongoing_requests"], d["max_queued_requests"]) == (4, 6)
    assert d["autoscaling_config"]["max_replicas"] == 3
    assert d["autoscaling_config"]["target_ongoing_requests"] == 2


def test_api_key_is_read_from_env_and_only_its_digest_is_kept(monkeypatch):
    cfg = parse_args(_args(api_key_env="SOAES_T_KEY"))
    monkeypatch.delenv("SOAES_T_KEY", raising=False)
    with pytest.raises(
        ServeConfigError, match="args.api_key_env: environment variable SOAES_T_KEY"
    ):
        api_key_digest(cfg)
    monkeypatch.setenv("SOAES_T_KEY", "s3cret")
    assert api_key_digest(cfg) == key_digest("s3cret") != "s3cret"
    body = json.dumps(llm_config_dict(cfg, ResolvedModels("t/t", None, None, None)))
    assert "s3cret" not in body
    assert api_key_digest(parse_args(_args())) is None


def test_config_is_frozen():
    cfg = ServeAppConfig.model_validate(_args())
    with pytest.raises(Exception, match="frozen"):
        cfg.model_id = "other"
