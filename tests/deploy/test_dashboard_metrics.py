"""Every series a Grafana panel or a Prometheus rule selects is one that exists: a metric the
code exports (read from the app's registry), a series the rules record, or one of the few that
other exporters provide. Their job and route labels name scrape jobs and routes that exist."""

from __future__ import annotations

import pytest

from tests.deploy import sources
from tests.deploy.promql import Selector, grafana_query_selectors, selectors

# Series that aiaas does not export, and who does.
EXTERNAL = {
    "up": "Prometheus itself, one per scrape target",
    "probe_success": "the blackbox exporter (the /readyz probe, compose)",
    "kube_deployment_status_replicas_unavailable": "kube-state-metrics (Kubernetes)",
}


def _queries() -> list[tuple[str, list[Selector]]]:
    found = [
        (f"{rule.get('alert') or rule.get('record')}", selectors(rule["expr"]))
        for rule in sources.rules()
    ]
    found += [(where, selectors(expr)) for where, expr in sources.dashboard_queries()]
    found += [
        (where, grafana_query_selectors(query))
        for where, query in sources.dashboard_variable_queries()
    ]
    return found


QUERIES = _queries()


def test_the_queries_were_read() -> None:
    wheres = [where for where, _ in QUERIES]
    assert "AiaasHigh5xxRatio" in wheres
    assert any(where.startswith("panel ") for where in wheres)
    assert any(where.startswith("variable ") for where in wheres)
    assert all(found for _, found in QUERIES), "a query with no series in it"


@pytest.mark.parametrize(("where", "found"), QUERIES, ids=[w for w, _ in QUERIES])
def test_every_selected_series_exists(
    where: str, found: list[Selector], exported_series: set[str]
) -> None:
    recorded = sources.recorded_names()
    for selector in found:
        name = selector.metric
        assert name, f"{where}: a selector without a metric name"
        if name.startswith("aiaas_"):
            assert name in exported_series, f"{where}: {name} is not exported by the code"
        else:
            assert name in recorded or name in EXTERNAL, f"{where}: {name} exists nowhere"


@pytest.mark.parametrize(("where", "found"), QUERIES, ids=[w for w, _ in QUERIES])
def test_job_labels_name_scrape_jobs(where: str, found: list[Selector]) -> None:
    jobs = sources.scrape_jobs()
    for selector in found:
        for matcher in selector.label("job"):
            if matcher.op in ("=", "=~"):
                assert any(matcher.accepts(job) for job in jobs), (
                    f"{where}: job{matcher.op}{matcher.value!r} matches no job of prometheus.yml"
                )


@pytest.mark.parametrize(("where", "found"), QUERIES, ids=[w for w, _ in QUERIES])
def test_route_labels_name_routes(
    where: str, found: list[Selector], route_templates: set[str]
) -> None:
    for selector in found:
        for matcher in selector.label("route"):
            if matcher.op in ("=", "=~"):
                assert any(matcher.accepts(route) for route in route_templates), (
                    f"{where}: route{matcher.op}{matcher.value!r} matches no route of the app"
                )


def _selected_routes(selector: Selector, routes: set[str]) -> set[str]:
    return {r for r in routes if all(m.accepts(r) for m in selector.label("route"))}


PROBES = {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}
PREDICT = {
    "/v1/models/{name}/predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
}


def test_the_error_ratio_alert_counts_api_routes_only(route_templates: set[str]) -> None:
    (rule,) = [r for r in sources.alerts() if r["alert"] == "AiaasHigh5xxRatio"]
    found = [s for s in selectors(rule["expr"]) if s.metric == "aiaas_http_requests_total"]
    assert len(found) == 3  # errors, all requests, the minimum of traffic
    for selector in found:
        selected = _selected_routes(selector, route_templates)
        assert not selected & PROBES
        assert "<unmatched>" not in selected
        assert selected >= PREDICT
        assert selected >= {"/v1/models", "/v1/predictions", "/v2/models/{name}"}


def test_the_slo_rules_select_the_predict_routes(route_templates: set[str]) -> None:
    assert route_templates >= PREDICT
    checked = 0
    (group,) = [g for g in sources.rule_groups() if g["name"] == "aiaas-slo-predict"]
    for rule in group["rules"]:
        for selector in selectors(rule["expr"]):
            if selector.metric.startswith("aiaas_http_request"):
                assert _selected_routes(selector, route_templates) == PREDICT, rule
                checked += 1
    assert checked >= 20
