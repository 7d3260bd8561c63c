"""Checks of the files in ``cluster/``: KubeRay manifests, ray-up configs, Grafana dashboards.

Each check returns a list of problems (empty: fine), each naming the file's field path, so
a test can show them all at once. The ray-up check runs Ray's own config preparation and
JSON-schema validation, exactly what ``ray up`` does before it talks to a cloud.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A metric selector: the name right before its label matcher (label names never are).
METRIC = re.compile(r"\b(ray_[a-zA-Z0-9_]+)\{")


def _ray_version() -> str:
    import ray

    return ray.__version__


def check_pod_template(tpl: Any, where: str) -> list[str]:
    """A pod template: containers with image and equal CPU/memory requests and limits,
    every volume mount backed by a volume."""
    if not isinstance(tpl, dict) or not isinstance(tpl.get("spec"), dict):
        return [f"{where}.spec: missing"]
    spec, out = tpl["spec"], []
    containers = spec.get("containers") or []
    if not containers:
        out.append(f"{where}.spec.containers: at least one container needed")
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for i, c in enumerate(containers):
        at = f"{where}.spec.containers[{i}]"
        if not c.get("name") or not c.get("image"):
            out.append(f"{at}: name and image are required")
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for key in ("cpu", "memory"):
            if key not in limits:
                out.append(f"{at}.resources.limits.{key}: required (Ray sizes the node from it)")
        for key, value in limits.items():
            if key in requests and str(requests[key]) != str(value):
                out.append(f"{at}.resources: requests.{key} != limits.{key}")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                out.append(f"{at}.volumeMounts: {m.get('name')!r} has no volume")
    return out


def check_raycluster_spec(spec: Any, where: str) -> list[str]:
    """A RayClusterSpec: Ray version, token auth, string start params, group sizes."""
    if not isinstance(spec, dict):
        return [f"{where}: missing"]
    out = []
    if str(spec.get("rayVersion")) != _ray_version():
        out.append(f"{where}.rayVersion: {spec.get('rayVersion')!r} != installed {_ray_version()}")
    if (spec.get("authOptions") or {}).get("mode") != "token":
        out.append(f"{where}.authOptions.mode: must be 'token'")
    head = spec.get("headGroupSpec") or {}
    groups = [("headGroupSpec", head)] + [
        (f"workerGroupSpecs[{i}]", g) for i, g in enumerate(spec.get("workerGroupSpecs") or [])
    ]
    names = set()
    for name, group in groups:
        at = f"{where}.{name}"
        for k, v in (group.get("rayStartParams") or {}).items():
            if not isinstance(v, str):  # KubeRay's type is map[string]string
                out.append(f"{at}.rayStartParams.{k}: must be a string, got {v!r}")
        out += check_pod_template(group.get("template"), f"{at}.template")
        if name == "headGroupSpec":
            continue
        gname = group.get("groupName", "")
        if not DNS_LABEL.match(gname) or gname in names:
            out.append(f"{at}.groupName: {gname!r} missing, invalid or repeated")
        names.add(gname)
        lo, n, hi = (group.get(k, 0) for k in ("minReplicas", "replicas", "maxReplicas"))
        if not 0 <= lo <= n <= hi or hi < 1:
            out.append(f"{at}: need 0 <= minReplicas <= replicas <= maxReplicas, maxReplicas >= 1")
    return out


def _check_rayjob(spec: dict, where: str, root: Path) -> list[str]:
    from soaes.config.loader import ConfigError, load_config

    out = []
    has_selector, has_cluster = "clusterSelector" in spec, "rayClusterSpec" in spec
    if has_selector == has_cluster:
        out.append(f"{where}: exactly one of clusterSelector and rayClusterSpec")
    if has_cluster:
        out += check_raycluster_spec(spec["rayClusterSpec"], f"{where}.rayClusterSpec")
    elif spec.get("shutdownAfterJobFinishes"):
        out.append(f"{where}.shutdownAfterJobFinishes: not allowed with clusterSelector")
    words = shlex.split(spec.get("entrypoint", ""))
    if words[:2] != ["soaes", "run"] or len(words) < 3:
        return out + [f"{where}.entrypoint: must be `soaes run pipelines/<x>.yaml [k=v …]`"]
    pipeline = root / words[2]
    if not pipeline.is_file():
        return out + [f"{where}.entrypoint: {words[2]} does not exist"]
    try:
        load_config(pipeline, [w for w in words[3:] if not w.startswith("--")])
    except ConfigError as e:
        out.append(f"{where}.entrypoint: {e}")
    return out


def _check_rayservice(spec: dict, where: str) -> list[str]:
    out = check_raycluster_spec(spec.get("rayClusterConfig"), f"{where}.rayClusterConfig")
    try:
        serve = yaml.safe_load(spec.get("serveConfigV2") or "")
    except yaml.YAMLError as e:
        return out + [f"{where}.serveConfigV2: not YAML: {e}"]
    apps = (serve or {}).get("applications") or []
    if not apps:
        out.append(f"{where}.serveConfigV2.applications: at least one application")
    for i, app in enumerate(apps):
        if not app.get("name") or not app.get("import_path"):
            out.append(f"{where}.serveConfigV2.applications[{i}]: name and import_path required")
    return out


def check_kuberay(doc: Any, root: Path) -> list[str]:
    """One KubeRay manifest (RayCluster, RayJob or RayService) against what KubeRay and
    soaes need; RayJob entrypoints must name a pipeline that exists and validates."""
    if not isinstance(doc, dict):
        return ["<root>: not a mapping"]
    kind, out = doc.get("kind"), []
    if doc.get("apiVersion") != "ray.io/v1":
        out.append(f"apiVersion: {doc.get('apiVersion')!r} != 'ray.io/v1'")
    name = (doc.get("metadata") or {}).get("name", "")
    if not DNS_LABEL.match(name):
        out.append(f"metadata.name: {name!r} is not a DNS-1123 label")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return out + ["spec: missing"]
    if kind == "RayCluster":
        out += check_raycluster_spec(spec, "spec")
    elif kind == "RayJob":
        out += _check_rayjob(spec, "spec", root)
    elif kind == "RayService":
        out += _check_rayservice(spec, "spec")
    else:
        out.append(f"kind: {kind!r} is not RayCluster, RayJob or RayService")
    return out


def check_ray_up(config: dict) -> list[str]:
    """A cluster-launcher YAML: Ray's own preparation + schema validation, then soaes rules
    (token auth, loopback dashboard, GPU profile installed, sane worker bounds)."""
    from soaes.ray_private import prepare_cluster_launcher_config

    try:
        prepared = prepare_cluster_launcher_config(copy.deepcopy(config))
    except Exception as e:  # noqa: BLE001 - jsonschema, ValueError, KeyError: all are findings
        return [f"ray validation: {e.__class__.__name__}: {str(e).splitlines()[0]}"]
    out = []
    types = prepared["available_node_types"]
    for name, node in types.items():
        if name != prepared["head_node_type"] and node["min_workers"] > node["max_workers"]:
            out.append(f"available_node_types.{name}: min_workers > max_workers")
    if not any(node["resources"].get("GPU", 0) > 0 for node in types.values()):
        out.append("available_node_types: no GPU worker type")
    setup = " ".join(prepared.get("setup_commands") or [])
    if "requirements/gpu.in" not in setup:
        out.append("setup_commands: must install requirements/gpu.in (the GPU profile)")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in prepared.get(key) or [] if "ray start" in c]
        if not starts or not all("RAY_AUTH_MODE=token" in c for c in starts):
            out.append(f"{key}: every `ray start` needs RAY_AUTH_MODE=token")
    if any("--dashboard-host=0.0.0.0" in c for c in prepared.get("head_start_ray_commands", [])):
        out.append("head_start_ray_commands: keep the dashboard on loopback (use `ray dashboard`)")
    return out


def dashboard_queries(dash: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of a Grafana dashboard."""
    return [
        (p.get("title", "?"), t.get("expr", ""))
        for p in dash.get("panels") or []
        for t in p.get("targets") or []
    ]


def check_grafana(dash: Any, known_metrics: set[str]) -> list[str]:
    """A Grafana dashboard: unique panel ids, a Prometheus datasource variable, every query
    balanced, filtered by Ray session and reading only metrics in ``known_metrics``."""
    if not isinstance(dash, dict) or not dash.get("uid") or not dash.get("title"):
        return ["<root>: a dashboard needs uid and title"]
    out = []
    ids = [p.get("id") for p in dash.get("panels") or []]
    if len(ids) != len(set(ids)):
        out.append("panels: ids repeat")
    variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
    if (variables.get("datasource") or {}).get("query") != "prometheus":
        out.append("templating: a 'datasource' variable of type prometheus is needed")
    for title, expr in dashboard_queries(dash):
        if not expr or expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
            out.append(f"panel {title!r}: empty or unbalanced query {expr!r}")
        names = METRIC.findall(expr)
        if not names:
            out.append(f"panel {title!r}: query reads no ray_* metric")
        for name in names:
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in known_metrics and base not in known_metrics:
                out.append(f"panel {title!r}: unknown metric {name}")
        if len(names) != expr.count('SessionName=~"$SessionName"'):
            out.append(f"panel {title!r}: every metric must be filtered by $SessionName")
    return out
