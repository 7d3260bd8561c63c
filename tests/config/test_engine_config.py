"""One vLLM engine config (soaes.config.inference) shared by eval, distillation and Serve."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from soaes.config.distill import AcceptanceConfig
from soaes.config.eval import GenerationConfig
from soaes.config.inference import EngineConfig, engine_from_kwargs
from soaes.config.serve import ServeAppConfig


def test_llm_kwargs_are_the_vllm_fields_and_the_pass_through():
    e = EngineConfig(max_model_len=512, engine_kwargs={"gpu_memory_utilization": 0.8})
    assert e.llm_kwargs() == {
        "dtype": "float32",
        "max_model_len": 512,
        "enforce_eager": True,
        "tensor_parallel_size": 1,
        "seed": 0,
        "gpu_memory_utilization": 0.8,
    }


def test_old_names_still_load():
    assert EngineConfig(extra={"max_num_seqs": 4}).engine_kwargs == {"max_num_seqs": 4}
    with pytest.raises(ValidationError, match="extra is its old name"):
        EngineConfig(extra={}, engine_kwargs={})
    g = GenerationConfig(max_new_tokens=8, max_model_len=512, dtype="bfloat16")
    assert g.engine.max_model_len == 512 and g.engine.dtype == "bfloat16"
    assert GenerationConfig(max_new_tokens=8, enforce_eager=False).engine.max_model_len == 2048
    assert GenerationConfig().engine.max_model_len == 2048
    assert GenerationConfig(engine={"dtype": "float16"}).engine.max_model_len == 2048
    mixed = GenerationConfig(max_model_len=512, engine={"dtype": "bfloat16"})  # old override
    assert (mixed.engine.max_model_len, mixed.engine.dtype) == (512, "bfloat16")
    with pytest.raises(ValidationError, match="set both in generation and in generation.engine"):
        GenerationConfig(max_model_len=512, engine={"max_model_len": 256})


def test_a_field_cannot_hide_in_the_pass_through():
    with pytest.raises(ValidationError, match=r"engine_kwargs \['max_model_len'\]"):
        EngineConfig(engine_kwargs={"max_model_len": 5})


def test_acceptance_and_generation_share_the_class():
    a = AcceptanceConfig(prompts={"split": "eval"})
    assert type(a.engine) is EngineConfig and type(GenerationConfig().engine) is EngineConfig


def test_serve_engine_kwargs_are_checked_against_the_engine_schema():
    ok = engine_from_kwargs({"max_model_len": 512, "enable_prefix_caching": True})
    assert ok.max_model_len == 512 and ok.engine_kwargs == {"enable_prefix_caching": True}
    base = {"model_id": "m", "target": "tiny/target"}
    app = ServeAppConfig(**base, engine_kwargs={"dtype": "bfloat16", "max_num_seqs": 4})
    assert app.engine_kwargs == {"dtype": "bfloat16", "max_num_seqs": 4}  # only what was set
    with pytest.raises(ValidationError, match="engine_kwargs"):
        ServeAppConfig(**base, engine_kwargs={"dtype": "float64"})
    with pytest.raises(ValidationError, match="engine_kwargs"):
        ServeAppConfig(**base, engine_kwargs={"max_model_len": 4})
