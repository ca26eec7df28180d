"""docker-compose.yml as a laptop demo should be: every service watched and bounded, the
monitoring UIs on the loopback address only, no default Grafana password, and Alertmanager
receiving the rules' alerts. (Its schema is checked by deploy/tools/validate_compose.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy import sources

COMPOSE = sources.load(sources.COMPOSE)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_a_healthcheck(name: str) -> None:
    service = SERVICES[name]
    healthcheck = service.get("healthcheck", {})
    if healthcheck.get("disable"):
        # Only a one-shot, which the others wait for with service_completed_successfully.
        assert service.get("restart") == "no", f"{name} runs for good but has no healthcheck"
        return
    test = healthcheck.get("test")
    assert test, f"{name} has no healthcheck test"
    assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_resource_limits(name: str) -> None:
    limits = SERVICES[name].get("deploy", {}).get("resources", {}).get("limits", {})
    assert {"cpus", "memory"} <= set(limits), f"{name} has no cpu and memory limits"


@pytest.mark.parametrize("name", ["prometheus", "grafana", "alertmanager"])
def test_monitoring_listens_on_loopback_only(name: str) -> None:
    ports = SERVICES[name]["ports"]
    assert ports
    for port in ports:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_grafana_admin_password_is_required_not_defaulted() -> None:
    password = SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password


def test_alertmanager_receives_the_alerts() -> None:
    prometheus = sources.load(sources.PROMETHEUS)
    targets = [
        target
        for alertmanager in prometheus["alerting"]["alertmanagers"]
        for config in alertmanager["static_configs"]
        for target in config["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    alertmanager = SERVICES["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in SERVICES["prometheus"]["volumes"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith("./"):
            assert (sources.ROOT / source).exists(), f"{name} mounts missing {source}"


def test_scrape_jobs_cover_the_worker_services() -> None:
    jobs = {job["job_name"]: job for job in sources.load(sources.PROMETHEUS)["scrape_configs"]}
    names = {
        name
        for job in ("aiaas-gateway", "aiaas-worker", "aiaas-trainer")
        for sd in jobs[job]["dns_sd_configs"]
        for name in sd["names"]
    }
    assert {"gateway", "worker", "trainer", "worker-gpu"} <= names
    assert names <= set(SERVICES)


def test_the_stack_requires_its_secrets_rather_than_defaulting_them() -> None:
    """Compose stops on a ${VAR:?...} without a value: the stack's secrets are exactly those."""
    text = (sources.ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required == {"AIAAS_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"}
