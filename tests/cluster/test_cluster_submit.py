"""``soaes submit`` / ``soaes jobs`` logic without a cluster: validation comes first, the
job command equals the local one, runtime env and addresses resolve as documented."""

from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path

import psutil
import pytest
import yaml

from soaes.cli import main
from soaes.cluster import auth
from soaes.cluster.client import DEFAULT_DASHBOARD, dashboard_address
from soaes.cluster.local import ClusterState, NodeState, save_state
from soaes.cluster.submit import (
    build_runtime_env,
    entrypoint,
    load_runtime_env,
    parse_env,
    pipeline_in_root,
    submission_id,
    submit_pipeline,
)
from soaes.config.loader import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines" / "data_sft_tiny.yaml"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_config_fails_before_any_connection():
    # Nothing listens at the address: a ConnectionError would mean we tried to submit.
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError, match="max_len: Input should be a valid integer"):
        submit_pipeline(PIPELINE, ["max_len=abc"], address=nowhere, root=ROOT)


def test_cli_bad_config_exits_2_naming_the_field(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc = main(["submit", str(PIPELINE), "stages.0.epochs=-1", "--address", "http://127.0.0.1:9"])
    assert rc == 2
    assert "stages.0.epochs: Input should be greater than 0" in capsys.readouterr().err


def test_cli_no_dashboard_exits_2_with_the_address(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    assert main(["submit", "pipelines/data_sft_tiny.yaml", "--address", nowhere]) == 2
    assert f"no Ray dashboard at {nowhere}" in capsys.readouterr().err


def test_entrypoint_is_the_local_command_with_quoted_overrides():
    overrides = ["name=two words", "mix.ratio={domain: 1, general: 2}"]
    cmd = entrypoint("pipelines/x.yaml", overrides)
    assert shlex.split(cmd) == ["soaes", "run", "pipelines/x.yaml", *overrides]
    assert shlex.split(entrypoint("p.yaml", [], print_config=True))[-1] == "--print-config"


def test_pipeline_must_be_inside_the_working_dir(tmp_path):
    assert pipeline_in_root(PIPELINE, ROOT) == "pipelines/data_sft_tiny.yaml"
    with pytest.raises(ConfigError, match="outside the working dir"):
        pipeline_in_root(PIPELINE, tmp_path)


def test_runtime_env_paths_installed_mode_and_extra_env(tmp_path):
    (tmp_path / "pkg").mkdir()
    renv_file = tmp_path / "renv.yaml"
    renv_file.write_text(
        yaml.safe_dump(
            {"working_dir": ".", "py_modules": ["pkg"], "env_vars": {"A": "1", "B": "${HOME}/b"}}
        )
    )
    renv = build_runtime_env(tmp_path, renv_file, env={"A": "2", "C": "3"})
    assert renv["working_dir"] == str(tmp_path) and renv["py_modules"] == [str(tmp_path / "pkg")]
    assert renv["env_vars"] == {"A": "2", "B": "${HOME}/b", "C": "3"}  # ${HOME}: node side
    assert "py_modules" not in build_runtime_env(tmp_path, renv_file, installed=True)


@pytest.mark.parametrize(
    "body,problem",
    [
        ({"working_dir": ".", "conda": "x"}, "unknown keys ['conda']"),
        ({"env_vars": {"N": 1}}, "env_vars.N: must be a string"),
        (["working_dir"], "top level must be a mapping"),
    ],
)
def test_runtime_env_file_errors_name_the_problem(tmp_path, body, problem):
    path = tmp_path / "renv.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_runtime_env(path, tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_runtime_env(tmp_path / "missing.yaml", tmp_path)


def test_parse_env_and_submission_id():
    assert parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_env(["NOVALUE"])
    sid = submission_id("data_sft tiny/v2")
    assert sid.startswith("soaes-data_sft-tiny-v2-") and sid != submission_id("data_sft tiny/v2")


def test_dashboard_address_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SOAES_CLUSTER_ROOT", str(tmp_path))
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("SOAES_CLUSTER", raising=False)
    assert dashboard_address() == DEFAULT_DASHBOARD
    # a recorded local cluster whose node process runs (this test process stands in)
    me = psutil.Process()
    sdir = tmp_path / "soaes-cluster-local"
    sdir.mkdir()
    node = NodeState("head", 0, "127.0.0.2", 4, me.pid, me.create_time(), "l", "t", 1)
    save_state(ClusterState("local", str(sdir), "127.0.0.2:1", "http://127.0.0.1:4242", 0, [node]))
    assert dashboard_address() == "http://127.0.0.1:4242"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "10.0.0.1:8265")
    assert dashboard_address() == "http://10.0.0.1:8265"
    assert dashboard_address("https://ray.example:443") == "https://ray.example:443"


def test_auth_token_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert auth.auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-file\n")
    assert auth.auth_headers() == {"Authorization": "Bearer from-file"}
    custom = tmp_path / "tok"
    custom.write_text("custom")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(custom))
    assert auth.auth_token() == "custom"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env")
    assert auth.auth_token() == "env"
    assert os.environ["HOME"] == str(tmp_path)
