"""The alert rules as operators meet them: each has a severity, a summary, a description and a
runbook section that says what to do; each has promtool cases where it fires and where it stays
silent; and the copies that Kubernetes and the Helm chart load are the same rules."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy import sources

ALERTS = sources.alerts()
NAMES = [a["alert"] for a in ALERTS]
RUNBOOK_PARTS = ("What it means", "How to confirm", "What to do", "How to know it is fixed")


def _runbook_sections() -> dict[str, str]:
    text = sources.RUNBOOKS.read_text()
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_alert_names_are_unique() -> None:
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("alert", ALERTS, ids=NAMES)
def test_alert_is_labelled_and_explained(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in ("critical", "warning")
    assert alert["annotations"]["summary"]
    assert alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"] == f"docs/runbooks.md#{alert['alert'].lower()}"


@pytest.mark.parametrize("name", NAMES)
def test_alert_has_a_runbook_section(name: str) -> None:
    sections = _runbook_sections()
    assert name in sections, f"docs/runbooks.md has no '## {name}'"
    headings = re.findall(r"^### (.+?)\s*$", sections[name], flags=re.MULTILINE)
    assert headings == list(RUNBOOK_PARTS), f"{name}: sections {headings}"


def test_every_runbook_section_is_an_alert() -> None:
    assert set(_runbook_sections()) <= set(NAMES)


def _promtool_cases() -> tuple[set[str], set[str]]:
    fires, silent = set(), set()
    for path in sources.RULE_TESTS:
        for case in sources.load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    return fires, silent


@pytest.mark.parametrize("name", NAMES)
def test_alert_has_promtool_cases_firing_and_silent(name: str) -> None:
    fires, silent = _promtool_cases()
    assert name in fires, f"no case in deploy/prometheus/tests where {name} fires"
    assert name in silent, f"no case in deploy/prometheus/tests where {name} stays silent"


def test_promtool_cases_load_every_rule_file() -> None:
    loaded = {
        (path.parent / rule_file).resolve()
        for path in sources.RULE_TESTS
        for rule_file in sources.load(path)["rule_files"]
    }
    assert loaded == {path.resolve() for path in sources.RULE_FILES}


def test_prometheus_loads_every_rule_file() -> None:
    rule_files = sources.load(sources.PROMETHEUS)["rule_files"]
    assert {sources.PROMETHEUS.parent / f for f in rule_files} == set(sources.RULE_FILES)


def test_kubernetes_prometheus_rule_holds_the_same_rules() -> None:
    (rule,) = sources.load_all(sources.DEPLOY / "k8s/prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == sources.rule_groups()


def test_kubernetes_dashboard_configmap_holds_the_dashboard() -> None:
    (configmap,) = sources.load_all(sources.DEPLOY / "k8s/grafana-dashboard.yaml")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["aiaas.json"]) == sources.dashboard()


def test_helm_chart_files_are_copies_of_the_sources() -> None:
    files = sources.DEPLOY / "helm/aiaas/files"
    for source in sources.RULE_FILES:
        assert (files / source.name).read_text() == source.read_text()
    assert (files / "dashboards/aiaas.json").read_text() == sources.DASHBOARD.read_text()
