"""The deploy/ files the tests read: rules, dashboard, scrape jobs, compose, manifests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULE_FILES = (DEPLOY / "prometheus/alerts.yml", DEPLOY / "prometheus/slo.yml")
RULE_TESTS = sorted((DEPLOY / "prometheus/tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana/dashboards/aiaas.json"
PROMETHEUS = DEPLOY / "prometheus/prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"
RUNBOOKS = ROOT / "docs/runbooks.md"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def rule_groups() -> list[dict[str, Any]]:
    return [group for path in RULE_FILES for group in load(path)["groups"]]


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target; template variables' queries come apart."""
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel['title']!r} {target['refId']}", target["expr"]


def dashboard_variable_queries() -> Iterator[tuple[str, str]]:
    for variable in dashboard().get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield (
                f"variable {variable['name']}",
                query["query"] if isinstance(query, dict) else query,
            )


def scrape_jobs() -> set[str]:
    return {job["job_name"] for job in load(PROMETHEUS)["scrape_configs"]}
