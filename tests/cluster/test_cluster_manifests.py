"""Every file under cluster/ validates: KubeRay manifests, ray-up YAMLs (with Ray's own
validation), the Grafana dashboard, runtime_env.yaml; and each check catches what it
should (broken copies fail, naming the field)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

import soaes.telemetry as soaes_metrics
from soaes.cluster.kuberay import rayjob_manifest, serve_config_v2
from soaes.cluster.manifests import (
    METRIC,
    check_grafana,
    check_kuberay,
    check_ray_up,
    dashboard_queries,
)
from soaes.cluster.submit import load_runtime_env
from soaes.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY_FILES = sorted((CLUSTER / "kuberay").rglob("*.yaml"))
RAY_UP_FILES = sorted((CLUSTER / "ray-up").glob("*.yaml"))
JOB_FILES = sorted((CLUSTER / "kuberay" / "jobs").glob("*.yaml"))
DASHBOARD = CLUSTER / "grafana" / "soaes.json"
RAYSERVICE = CLUSTER / "kuberay" / "rayservice-spec-decoding.yaml"
SERVE_APP = ROOT / "serve_apps" / "gpu_qwen72b_spec.yaml"

# Ray's own series the dashboard reads. The heavy test sees the cluster/Serve ones on a
# live cluster's export port; Ray Data/Train names are those of Ray 2.60's sources
# (data/_internal/stats.py, train/v2/_internal/metrics, dashboard reporter agent).
RAY_METRICS = {
    "ray_cluster_active_nodes",
    "ray_node_cpu_count",
    "ray_node_cpu_utilization",
    "ray_node_mem_used",
    "ray_node_gpus_utilization",
    "ray_data_output_rows",
    "ray_data_output_bytes",
    "ray_data_spilled_bytes",
    "ray_train_worker_group_start_total_time_s",
    "ray_serve_num_http_requests_total",
    "ray_serve_http_request_latency_ms",
    "ray_serve_deployment_replica_healthy",
    "ray_serve_deployment_queued_queries",
}
# vLLM's series as exported through Ray (the names the serving metrics module reads too).
VLLM_METRICS = {
    "ray_vllm_generation_tokens_total",
    "ray_vllm_time_to_first_token_seconds",
    "ray_vllm_spec_decode_num_drafts_total",
    "ray_vllm_spec_decode_num_draft_tokens_total",
    "ray_vllm_spec_decode_num_accepted_tokens_total",
}
KNOWN_METRICS = RAY_METRICS | VLLM_METRICS | set(soaes_metrics.EXPORTED.values())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _ray_docs() -> list[tuple[str, dict]]:
    return [
        (f"{p.relative_to(ROOT)}#{i}", d)
        for p in KUBERAY_FILES
        for i, d in enumerate(_docs(p))
        if d.get("apiVersion", "").startswith("ray.io")
    ]


# --- KubeRay -----------------------------------------------------------------------------


@pytest.mark.parametrize("where,doc", _ray_docs(), ids=lambda x: x if isinstance(x, str) else "")
def test_kuberay_manifest_validates(where, doc):
    assert check_kuberay(doc, ROOT) == []


def test_kuberay_has_cluster_service_and_a_job_per_shipped_pipeline_file():
    kinds = [d["kind"] for _, d in _ray_docs()]
    assert kinds.count("RayCluster") == 1 and kinds.count("RayService") == 1
    assert len(JOB_FILES) >= 2 and kinds.count("RayJob") == len(JOB_FILES)


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_rayjob_matches_its_pipeline(path):
    """Each RayJob is what the generator makes of its pipeline today (no drift), and runs
    on the RayCluster that the kustomization deploys."""
    (doc,) = _docs(path)
    pipeline = ROOT / doc["spec"]["entrypoint"].split()[2]
    assert doc == rayjob_manifest(pipeline, ROOT), (
        f"regenerate: python -m soaes.cluster.kuberay rayjob {pipeline.relative_to(ROOT)} --write"
    )
    (cluster,) = _docs(CLUSTER / "kuberay" / "raycluster.yaml")
    assert doc["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]


def _values(obj, key: str):
    """Every value stored under ``key`` anywhere inside ``obj``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(obj, list):
        for item in obj:
            yield from _values(item, key)


def test_kustomization_lists_existing_files_and_volumes_exist():
    kust = yaml.safe_load((CLUSTER / "kuberay" / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (CLUSTER / "kuberay" / res).is_file(), res
    (pvc,) = _docs(CLUSTER / "kuberay" / "storage.yaml")
    docs = [d for _, d in _ray_docs()]
    assert set(_values(docs, "claimName")) == {pvc["metadata"]["name"]}
    # one image everywhere, the one kustomize rewrites
    image = kust["images"][0]
    assert set(_values(docs, "image")) == {f"{image['name']}:{image['newTag']}"}


def test_rayservice_serves_the_serving_engineers_app_and_can_scale_to_it():
    (svc,) = _docs(RAYSERVICE)
    served = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert served == serve_config_v2(SERVE_APP), (
        "regenerate: python -m soaes.cluster.kuberay serve-config serve_apps/gpu_qwen72b_spec.yaml"
    )
    (app,) = served["applications"]
    args = app["args"]
    auto = args["deployment"]["autoscaling"]
    gpus_per_replica = args["tensor_parallel_size"]  # the draft shares the first target GPU
    groups = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    pod_gpus = [
        int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for g in groups
    ]
    max_gpus = sum(n * g["maxReplicas"] for n, g in zip(pod_gpus, groups, strict=True))
    min_gpus = sum(n * g["minReplicas"] for n, g in zip(pod_gpus, groups, strict=True))
    assert auto["max_replicas"] * gpus_per_replica <= max_gpus
    assert auto["min_replicas"] * gpus_per_replica <= min_gpus
    assert all(n % gpus_per_replica == 0 for n in pod_gpus)  # STRICT_PACK fits a whole pod


def test_rayservice_app_args_pass_the_serving_config_validation(tmp_path):
    from soaes.serve import deploy

    (svc,) = _docs(RAYSERVICE)
    app_file = tmp_path / "app.yaml"
    app_file.write_text(svc["spec"]["serveConfigV2"])
    schema = deploy.load_serve_config(app_file)
    assert [a.import_path for a in schema.applications] == ["soaes.serve.app:build_app"]


@pytest.mark.parametrize(
    "path,value,problem",
    [
        ("spec.rayVersion", "2.9.0", "rayVersion"),
        ("spec.authOptions.mode", "disabled", "authOptions.mode"),
        (
            "spec.headGroupSpec.rayStartParams.num-cpus",
            0,
            "rayStartParams.num-cpus: must be a string",
        ),
        ("spec.workerGroupSpecs.0.minReplicas", 9, "minReplicas <= replicas"),
        ("spec.workerGroupSpecs.1.groupName", "cpu-data", "groupName"),
        ("spec.headGroupSpec.template.spec.containers.0.image", "", "name and image"),
        ("metadata.name", "Soaes_Cluster", "DNS-1123"),
        ("apiVersion", "ray.io/v1alpha1", "apiVersion"),
    ],
)
def test_raycluster_check_catches_mistakes(path, value, problem):
    (doc,) = _docs(CLUSTER / "kuberay" / "raycluster.yaml")
    node = doc
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    problems = check_kuberay(doc, ROOT)
    assert any(problem in p for p in problems), problems


def test_rayjob_check_names_a_missing_or_invalid_pipeline():
    (doc,) = _docs(JOB_FILES[0])
    missing = copy.deepcopy(doc)
    missing["spec"]["entrypoint"] = "soaes run pipelines/nope.yaml"
    assert any("does not exist" in p for p in check_kuberay(missing, ROOT))
    bad = copy.deepcopy(doc)
    bad["spec"]["entrypoint"] += " name=[1,2]"
    assert any("name: Input should be a valid string" in p for p in check_kuberay(bad, ROOT))
    both = copy.deepcopy(doc)
    both["spec"]["entrypoint"] = "python train.py"
    assert any("must be `soaes run" in p for p in check_kuberay(both, ROOT))


# --- ray-up ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RAY_UP_FILES, ids=lambda p: p.name)
def test_ray_up_yaml_passes_rays_validation(path):
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert check_ray_up(config) == []
    types = config["available_node_types"]
    gpu_types = [t for t in types.values() if t["resources"].get("GPU")]
    assert any(t["resources"]["GPU"] == 8 for t in gpu_types)  # the 72B nodes
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert (ROOT / "requirements" / "gpu.in").is_file()


@pytest.mark.parametrize(
    "mutate,problem",
    [
        (lambda c: c["available_node_types"]["gpu_h100x8"].update(min_worker=1), "ray validation"),
        (lambda c: c.update(head_node_type="nope"), "ray validation"),
        (lambda c: c["available_node_types"]["gpu_l40sx4"].update(min_workers=9), "min_workers"),
        (lambda c: c.update(setup_commands=["pip install soaes"]), "requirements/gpu.in"),
        (
            lambda c: c.update(worker_start_ray_commands=["ray start --address=$RAY_HEAD_IP:6379"]),
            "RAY_AUTH_MODE=token",
        ),
    ],
)
def test_ray_up_check_catches_mistakes(mutate, problem):
    config = yaml.safe_load(RAY_UP_FILES[0].read_text(encoding="utf-8"))
    mutate(config)
    problems = check_ray_up(config)
    assert any(problem in p for p in problems), problems


# --- Grafana -----------------------------------------------------------------------------


def test_grafana_dashboard_reads_known_metrics_for_every_area():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert check_grafana(dash, KNOWN_METRICS) == []
    queries = " ".join(expr for _, expr in dashboard_queries(dash))
    must_show = [
        soaes_metrics.EXPORTED[soaes_metrics.TRAIN_LOSS],
        soaes_metrics.EXPORTED[soaes_metrics.TRAIN_TOKENS_PER_S],
        soaes_metrics.EXPORTED[soaes_metrics.DATA_RECORDS],
        "ray_data_output_rows",
        "ray_serve_http_request_latency_ms_bucket",
        "ray_vllm_spec_decode_num_accepted_tokens_total",
        "ray_vllm_spec_decode_num_draft_tokens_total",
    ]
    for name in must_show:
        assert name + "{" in queries, name
    # acceptance rate = accepted / drafted, as the serving metrics module computes it
    (accept,) = [e for t, e in dashboard_queries(dash) if t == "Draft acceptance rate"]
    num, den = accept.split(" / ")
    assert "accepted_tokens" in num and "num_draft_tokens" in den


def test_grafana_vllm_names_match_the_serving_metrics_module():
    from soaes.serve import metrics as serve_metrics

    names = set(serve_metrics._VLLM_COUNTERS.values())
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {m for _, e in dashboard_queries(dash) for m in METRIC.findall(e) if "vllm" in m}
    for m in used:
        base = re.sub(r"_bucket$", "", m)
        assert m in names or base + "_sum" in names, m


def test_grafana_check_catches_unknown_metric_and_missing_session_filter():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    target = dash["panels"][1]["targets"][0]
    target["expr"] = "sum(ray_made_up_metric{job='x'})"
    problems = check_grafana(dash, KNOWN_METRICS)
    assert any("unknown metric ray_made_up_metric" in p for p in problems)
    assert any("filtered by $SessionName" in p for p in problems)


# --- runtime env -------------------------------------------------------------------------


def test_runtime_env_file_resolves_and_is_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv

    renv = load_runtime_env(CLUSTER / "runtime_env.yaml", ROOT)
    assert renv["working_dir"] == str(ROOT)
    assert renv["py_modules"] == [str(ROOT / "platform" / "src" / "soaes")]
    assert {"SOAES_CACHE", "TORCH_EXTENSIONS_DIR", "VLLM_CPU_KVCACHE_SPACE"} <= set(
        renv["env_vars"]
    )
    for pattern in ("/.venv/", "/runs/"):
        assert pattern in renv["excludes"]
    RuntimeEnv(**renv)  # Ray's own parsing of the fields


def test_runtime_env_ships_the_whole_package_and_no_local_junk(tmp_path):
    """What Ray would upload: every soaes module in py_modules (the excludes also apply
    there); no virtualenv, run outputs or package copy in the working dir."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    renv = load_runtime_env(CLUSTER / "runtime_env.yaml", ROOT)
    shipped = {}
    for name, path, parent in [
        ("pkg", renv["py_modules"][0], True),
        ("wd", renv["working_dir"], False),
    ]:
        target = tmp_path / f"{name}.zip"
        create_package(
            path,
            target,
            include_gitignore=True,
            include_parent_dir=parent,
            excludes=renv["excludes"],
        )
        shipped[name] = set(zipfile.ZipFile(target).namelist())
    src = ROOT / "platform" / "src"
    modules = {p.relative_to(src).as_posix() for p in (src / "soaes").rglob("*.py")}
    modules = {m for m in modules if "__pycache__" not in m}
    assert modules <= shipped["pkg"], sorted(modules - shipped["pkg"])[:5]
    assert "pipelines/data_sft_tiny.yaml" in shipped["wd"]
    assert not any(n.startswith((".venv/", "runs/", "platform/", ".git/")) for n in shipped["wd"])


def _gpu_capacity_kuberay(spec: dict) -> tuple[int, int]:
    """(GPUs of all GPU pods at maxReplicas, GPUs of the largest pod) of a RayClusterSpec."""
    pods = [
        (
            int(
                g["template"]["spec"]["containers"][0]["resources"]["limits"].get(
                    "nvidia.com/gpu", 0
                )
            ),
            g["maxReplicas"],
        )
        for g in spec["workerGroupSpecs"]
    ]
    return sum(n * m for n, m in pods), max(n for n, _ in pods)


def _job_config(path: Path):
    (doc,) = _docs(path)
    return load_config(ROOT / doc["spec"]["entrypoint"].split()[2])


def _gpu_scaling(path: Path):
    """The ScalingSpec of a RayJob's pipeline when it trains on GPUs, else None."""
    scaling = getattr(_job_config(path), "scaling", None)
    return scaling if scaling is not None and getattr(scaling, "use_gpu", False) else None


GPU_JOB_FILES = [p for p in JOB_FILES if _gpu_scaling(p) is not None]


def test_some_rayjobs_train_on_gpus():
    assert GPU_JOB_FILES, "no RayJob manifest runs a GPU training pipeline"


@pytest.mark.parametrize("path", GPU_JOB_FILES, ids=lambda p: p.name)
def test_rayjob_fits_the_cluster_it_runs_on(path):
    """A GPU training pipeline's workers fit the RayCluster's GPU groups at full scale, and
    on the ray-up cluster too (else the autoscaler waits forever)."""
    scaling = _gpu_scaling(path)
    need = scaling.num_workers * scaling.gpus_per_worker
    (cluster,) = _docs(CLUSTER / "kuberay" / "raycluster.yaml")
    total, largest = _gpu_capacity_kuberay(cluster["spec"])
    assert need <= total and scaling.gpus_per_worker <= largest
    for ray_up in RAY_UP_FILES:
        types = yaml.safe_load(ray_up.read_text())["available_node_types"].values()
        assert need <= sum(t["resources"].get("GPU", 0) * t.get("max_workers", 0) for t in types)
