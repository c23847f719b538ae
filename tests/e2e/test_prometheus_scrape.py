"""A real Prometheus scraping a real oracle (issue 28, item 3).

An in-process server of this module (``conftest.make_settings``: SQLite, NAS-Bench-201,
``/metrics`` on a free port; its own, so that the process-global ``oracle_ready`` is 1: other
tests' servers set it to 0 when they stop) is scraped every second by a ``prometheus``
binary (Debian's package, installed by ``make test`` when it can) from a static config on
loopback, labelled as the ServiceMonitor would label it (``job="latency-oracle"``,
``namespace``, ``pod``), with the alert rules loaded. After traffic (ranks, a bad request, a
register and its retry) the tests query Prometheus's HTTP API:

* every query of the Grafana dashboard returns at least one series (``$namespace`` = the
  namespace the dashboard's own variable query finds, ``$__rate_interval`` = 15 s, i.e. at
  least 4 scrape intervals as in Grafana);
* every ``oracle_*`` / ``grpc_server_*`` metric the docs name is in the scrape;
* the alert rules evaluate without error on the real series, and the readiness alerts'
  conditions are false for a ready server.

Waits are bounded; Prometheus is killed at the end whatever happens. Skips only when the
``prometheus`` binary is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from client_sdk import OracleClient
from client_sdk.proto.latency_oracle.v1 import oracle_pb2 as pb
from client_sdk.proto.latency_oracle.v1 import oracle_pb2_grpc as pb_grpc
from client_sdk.spaces import get_space
from oracle_server.app import App
from oracle_server.predictor import LatencyModel
from tests.e2e.conftest import make_settings
from tests.helpers import unique_name
from tests.support.launch import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
RULE_FILE = REPO / "deploy" / "prometheus" / "prometheusrule.yaml"
DOCS = sorted([*REPO.glob("docs/*.md"), REPO / "README.md", *(REPO / "deploy").rglob("*.md")])
PROMETHEUS = shutil.which("prometheus")
JOB, NAMESPACE, POD = "latency-oracle", "oracle-e2e", "oracle-e2e-0"
SCRAPE_INTERVAL_S = 1
#: Grafana's $__rate_interval is at least 4 scrape intervals; 15 s keeps >= 2 samples in reach.
RATE_INTERVAL = "15s"
#: Every wait below ends by then (from Prometheus's start).
DEADLINE_S = 40.0
#: Dashboard queries over labelled counters whose series only exist once an event has happened
#: (the server does not create their label values up front): without a series, xfail saying
#: so. Other in-process servers may have counted one already, so this cannot be a strict
#: xfail; remove an entry once oracle_server initialises that metric's labels.
UNINITIALISED: dict[str, str] = {}

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus binary not found: install Debian's `prometheus` package (`make test` "
    "does it as root with apt-get; else `sudo apt-get install prometheus`)",
)
SPACE = get_space("nasbench201")


class Prometheus:
    """A ``prometheus`` process on a free loopback port, and its HTTP API."""

    def __init__(self, workdir: Path, metrics_port: int) -> None:
        spec = yaml.safe_load(RULE_FILE.read_text())["spec"]
        (workdir / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{metrics_port}"],
                            "labels": {"namespace": NAMESPACE, "pod": POD},
                        }
                    ],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        self.started = time.monotonic()

    def remaining(self) -> float:
        return DEADLINE_S - (time.monotonic() - self.started)

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def wait_ready(self) -> None:
        while self.remaining() > 0:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready in time: {self.log.read_text()[-2000:]}")

    def wait(self, what: str, ok: Any, every_s: float = 0.25) -> Any:
        """Poll ``ok()`` until it returns something truthy, up to the deadline."""
        while True:
            value = ok()
            if value or self.remaining() <= 0:
                assert value, f"{what}: not within {DEADLINE_S:.0f} s of Prometheus's start"
                return value
            time.sleep(every_s)

    def stop(self) -> None:
        stop_process(self.proc, 5)


def _drive_traffic(server: App) -> None:
    """Ranks, a bad request, a register and its retry."""
    address = f"127.0.0.1:{server.port}"
    genes = SPACE.sample(12, rng=28)
    lat = SPACE.table.device_column("raspi4")[SPACE.table_rows(genes)]
    name = unique_name("prom")
    with OracleClient(address, timeout_s=30) as client:
        devices = [d.name for d in client.list_devices("nasbench201")][:3]
        for _ in range(3):
            client.rank("nasbench201", SPACE.table.genes[:300], devices)
        request_id = str(uuid.uuid4())
        for _ in range(2):  # the second one is a retry, answered from its request id
            client.register_device(name, "nasbench201", (genes, lat), request_id=request_id)
        client.rank("nasbench201", genes, name)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.LatencyOracleStub(channel)
        bad = pb.RankRequest(space="no-such-space", devices=["nobody"])
        with pytest.raises(grpc.RpcError) as err:
            stub.Rank(bad, timeout=10)
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


@pytest.fixture(scope="module")
def oracle(nb201_model: LatencyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    settings = make_settings(tmp_path_factory.mktemp("oracle-prom"))
    app = App(settings, models={"nasbench201": nb201_model}).start(True, 60)
    try:
        assert app.metrics_port > 0, "the server exports no metrics"
        yield app
    finally:
        app.stop(1.0)


@pytest.fixture(scope="module")
def prom(oracle: App, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), oracle.metrics_port)
    try:
        p.wait_ready()
        p.wait("target up", lambda: p.query(f'up{{job="{JOB}"}} == 1'))
        _drive_traffic(oracle)
        # The bad request (the traffic's last call) scraped, then one more scrape, so that
        # every rate() has two samples after the traffic.
        bad = f'grpc_server_handled_total{{job="{JOB}", grpc_method="Rank", grpc_code!="OK"}}'
        p.wait("the traffic scraped", lambda: p.query(bad))
        time.sleep(2 * SCRAPE_INTERVAL_S)
        yield p
    finally:
        p.stop()


# ------------------------------------------------------------------------------- dashboard
def _targets() -> list[tuple[str, str, str]]:
    """(dashboard, 'panel id title refId', expr) for every panel target with an expression."""
    out = []

    def walk(name: str, panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for t in panel.get("targets", []):
                if t.get("expr"):
                    where = f"{panel['id']} {panel.get('title')} {t['refId']}"
                    out.append((name, where, t["expr"]))
            walk(name, panel.get("panels", []))

    for path in DASHBOARDS:
        walk(path.name, json.loads(path.read_text())["panels"])
    return out


TARGETS = _targets()


def _substitute(expr: str, namespace: str) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "2s")
    expr = re.sub(r"\$\{namespace(?::\w+)?\}|\$namespace\b", namespace, expr)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _namespace_variable(prom: Prometheus) -> str:
    """The values of the dashboard's namespace variable (label_values(<selector>, namespace))."""
    dashboard = json.loads(DASHBOARDS[0].read_text())
    var = next(v for v in dashboard["templating"]["list"] if v["name"] == "namespace")
    query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
    assert m, f"namespace variable query {query!r}"
    return prom.get(f"/api/v1/label/{m[2]}/values", **{"match[]": m[1]})


def test_namespace_variable_finds_the_namespace(prom: Prometheus) -> None:
    assert prom.wait("namespace variable", lambda: _namespace_variable(prom)) == [NAMESPACE]


@pytest.mark.parametrize(
    "expr", [pytest.param(expr, id=f"{dash}:{where}") for dash, where, expr in TARGETS]
)
def test_dashboard_query_returns_series(prom: Prometheus, expr: str) -> None:
    query = _substitute(expr, NAMESPACE)
    uninitialised = [f"{m}: {why}" for m, why in UNINITIALISED.items() if m in expr]
    if uninitialised:
        if not prom.query(query):
            pytest.xfail(f"no series yet, {'; '.join(uninitialised)} (labels not initialised)")
    else:
        prom.wait(f"a series for {query}", lambda: prom.query(query))


def test_dashboard_has_queries() -> None:
    assert TARGETS, "no dashboard query found"


# -------------------------------------------------------------------------- doc metrics
_METRIC = re.compile(r"\b((?:oracle|grpc_server)_[a-z0-9_]+)")
_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_info", "_created")


def _non_metric_names() -> set[str]:
    """``oracle_*`` words in the docs that are not metrics: database tables, Python modules."""
    registry = (REPO / "oracle_server" / "registry_schema.py").read_text()
    tables = set(re.findall(r'__tablename__\s*=\s*"(oracle_\w+)"', registry))
    assert tables, "no table names found in oracle_server/registry_schema.py"
    modules = {
        p.stem
        for top in ("oracle_server", "client_sdk")
        for p in (REPO / top).rglob("oracle_*")
        if "__pycache__" not in p.parts
    }
    return tables | modules | {"oracle_server"}


def _doc_metric_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for path in DOCS:
        for name in _METRIC.findall(path.read_text()):
            names.setdefault(name, []).append(str(path.relative_to(REPO)))
    return names


def test_every_metric_the_docs_name_is_scraped(prom: Prometheus) -> None:
    """Each ``oracle_*``/``grpc_server_*`` name in the docs is a metric family Prometheus got
    from the scrape (its metadata: HELP/TYPE, even before a labelled counter has a sample)
    or a series name; database tables and Python modules named ``oracle_*`` are not metrics."""
    docs = _doc_metric_names()
    assert any(n.startswith("oracle_") for n in docs), "no oracle_* name found in the docs"

    def scraped() -> set[str]:
        families = set(prom.get("/api/v1/metadata"))
        series = set(prom.get("/api/v1/label/__name__/values", **{"match[]": f'{{job="{JOB}"}}'}))
        return series | {f + s for f in families for s in _SUFFIXES}

    names = prom.wait(
        "oracle metadata", lambda: {n for n in scraped() if n.startswith("oracle_")} and scraped()
    )
    other = _non_metric_names()
    missing = {n: sorted(set(w)) for n, w in docs.items() if n not in names and n not in other}
    assert not missing, f"docs name metrics the server does not export: {missing}"


# ----------------------------------------------------------------------------- alert rules
def test_alert_rules_evaluate_on_the_real_series(prom: Prometheus) -> None:
    spec = yaml.safe_load(RULE_FILE.read_text())["spec"]
    expected = {r.get("alert") or r.get("record") for g in spec["groups"] for r in g["rules"]}

    def evaluated() -> list[dict[str, Any]]:
        rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
        done = all(not r.get("lastEvaluation", "0001").startswith("0001") for r in rules)
        return rules if rules and done else []

    rules = prom.wait("rules evaluated", evaluated)
    assert {r["name"] for r in rules} == expected
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not bad, f"rules failing on the real series: {bad}"


def test_readiness_alerts_are_quiet_for_a_ready_server(prom: Prometheus) -> None:
    spec = yaml.safe_load(RULE_FILE.read_text())["spec"]
    exprs = {r["alert"]: r["expr"] for g in spec["groups"] for r in g["rules"] if "alert" in r}
    assert prom.query(f'oracle_ready{{job="{JOB}", namespace="{NAMESPACE}"}} == 1')
    for name in ("OracleNoReadyPods", "OraclePodNotReady"):
        assert prom.query(exprs[name]) == [], f"{name}'s condition holds for a ready server"
