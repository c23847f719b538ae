"""Alert rules under promtool, and the Grafana dashboard's structure (issue 28, item 3).

* ``promtool check rules`` on the rule groups of ``deploy/prometheus/prometheusrule.yaml``
  (the PrometheusRule's ``spec``, written to a temporary rule file);
* ``promtool test rules`` on ``deploy/prometheus/tests/*.test.yaml``, and every alert of the
  rule file has at least one case where it must fire and one where it must not;
* the dashboard JSON: a Prometheus data source variable used by every panel and query
  variable, a query in every panel, unique panel ids, only defined variables in expressions.

promtool comes with Debian's ``prometheus`` package (``make test`` installs it when it can);
without it the promtool tests skip and say so, the structural ones still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULE_FILE = REPO / "deploy" / "prometheus" / "prometheusrule.yaml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.test.yaml"))
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
#: The name the promtool test files give the rule file (``rule_files``).
RULES_NAME = "oracle-rules.yaml"
PROMTOOL = shutil.which("promtool")
NEEDS_PROMTOOL = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's `prometheus` package (`make test` does it "
    "as root with apt-get; else `sudo apt-get install prometheus`)",
)


def _rules_spec() -> dict[str, Any]:
    rule = yaml.safe_load(RULE_FILE.read_text())
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _rules_spec()["groups"] for r in g["rules"] if "alert" in r}


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture()
def rules_dir(tmp_path: Path) -> Path:
    """The rule groups as a plain rule file beside copies of the promtool test files."""
    (tmp_path / RULES_NAME).write_text(yaml.safe_dump(_rules_spec(), sort_keys=False))
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


# ------------------------------------------------------------------------------- promtool
@NEEDS_PROMTOOL
def test_promtool_check_rules(rules_dir: Path) -> None:
    out = _promtool("check", "rules", RULES_NAME, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    n = sum(len(g["rules"]) for g in _rules_spec()["groups"])
    assert f"SUCCESS: {n} rules found" in out.stdout, out.stdout


@NEEDS_PROMTOOL
@pytest.mark.parametrize("path", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_promtool_test_rules(rules_dir: Path, path: Path) -> None:
    out = _promtool("test", "rules", path.name, cwd=rules_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout, out.stdout


# ------------------------------------------------------------- coverage of the rule tests
def _cases() -> dict[str, dict[str, list[str]]]:
    """alertname -> {"firing": [...], "quiet": [...]} (file: test name @ eval_time)."""
    cases: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"firing": [], "quiet": []})
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc.get("rule_files") == [RULES_NAME], f"{path.name}: rule_files"
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "firing" if case.get("exp_alerts") else "quiet"
                where = f"{path.name}: {test.get('name', '?')} @ {case['eval_time']}"
                cases[case["alertname"]][kind].append(where)
    return cases


def test_rule_tests_exist() -> None:
    assert RULE_TESTS, "no promtool test files under deploy/prometheus/tests"
    assert _alerts(), f"no alert in {RULE_FILE}"


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts, cases = set(_alerts()), _cases()
    assert not set(cases) - alerts, f"tests for alerts not in the rule file: {set(cases) - alerts}"
    missing = [
        f"{name}: no {kind} case"
        for name in sorted(alerts)
        for kind in ("firing", "quiet")
        if not cases.get(name, {}).get(kind)
    ]
    assert not missing, "\n".join(missing)


def test_firing_cases_state_labels_and_annotations() -> None:
    """A firing case names the rule's own labels and every annotation (the rendered
    templates are compared by promtool, so a broken template fails the test)."""
    alerts = _alerts()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                rule = alerts[case["alertname"]]
                for alert in case.get("exp_alerts") or []:
                    where = f"{path.name}: {test.get('name')} @ {case['eval_time']}"
                    labels = alert.get("exp_labels", {})
                    assert rule["labels"].items() <= labels.items(), where
                    assert set(alert.get("exp_annotations", {})) == set(rule["annotations"]), where


# ----------------------------------------------------------------- dashboard structure
def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


#: Grafana's built-in variables (not in ``templating``).
GRAFANA_BUILTINS = {
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__dashboard",
    "__from",
    "__to",
    "__name",
    "__org",
    "__user",
    "__timeFilter",
}
_VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]")


def _variables_used(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VAR.finditer(text)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_structure(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    sources = [n for n, v in variables.items() if v["type"] == "datasource"]
    assert sources, "no data source variable"
    for name in sources:
        assert variables[name]["query"] == "prometheus", f"${name} is not a Prometheus source"
    source_refs = {f"${{{n}}}" for n in sources} | {f"${n}" for n in sources}

    def uses_variable_source(obj: dict[str, Any]) -> bool:
        ds = obj.get("datasource")
        return (
            isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in source_refs
        )

    for name, var in variables.items():
        if var["type"] == "query":
            assert uses_variable_source(var), f"variable ${name}: data source not a variable"

    panels = _panels(dashboard["panels"])
    ids = [p.get("id") for p in panels]
    assert None not in ids, "a panel without an id"
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    defined = set(variables) | GRAFANA_BUILTINS
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        if panel["type"] == "row":
            assert not panel.get("targets"), f"{where}: a row with queries"
            continue
        targets = panel.get("targets", [])
        assert targets, f"{where}: no query"
        assert uses_variable_source(panel), f"{where}: data source not a variable"
        ref_ids = [t.get("refId") for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refIds"
        for target in targets:
            assert (target.get("expr") or "").strip(), f"{where}: empty query {target}"
            assert uses_variable_source(target), f"{where} {target['refId']}: data source"
            unknown = _variables_used(target["expr"]) - defined
            assert not unknown, f"{where}: undefined variables {unknown}"
        assert panel.get("gridPos", {}).get("w") and panel["gridPos"].get("h"), where
