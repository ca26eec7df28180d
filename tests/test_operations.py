from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.operations import service
from tests.factories import Account
from tests.helpers import assert_problem


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_the_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


def test_readyz_checks_the_broker_when_configured(
    settings: Settings, db: Database, redis_url: str
) -> None:
    app = create_app(settings.model_copy(update={"broker_url": redis_url}), database=db)
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(settings: Settings, db: Database) -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    down = settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:9/0", "readiness_timeout_s": 1.0}
    )
    with TestClient(create_app(down, database=db)) as client:
        response = client.get("/readyz")
    body = assert_problem(response, 503)
    assert "broker" in body["detail"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] != "ok"


def test_readyz_reports_an_unreachable_database(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    )
    with TestClient(create_app(broken)) as client:
        body = assert_problem(client.get("/readyz"), 503)
    assert "database" in body["detail"]


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def test_metrics_count_requests_by_route_template(client: TestClient, account: Account) -> None:
    key_id = uuid.uuid4()
    for _ in range(3):
        client.get("/v1/me", headers=account.headers)
    client.delete(f"/v1/api-keys/{key_id}", headers=account.headers)
    client.get("/no/such/route/1")
    client.get("/no/such/route/2")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    counts = _samples(text, "aiaas_http_requests_total")
    assert counts['method="GET",route="/v1/me",status="200"'] == 3
    assert counts['method="DELETE",route="/v1/api-keys/{id}",status="404"'] == 1
    assert counts['method="GET",route="<unmatched>",status="404"'] == 2
    assert str(key_id) not in text
    assert "/no/such/route" not in text
    buckets = _samples(text, "aiaas_http_request_duration_seconds_count")
    assert buckets['method="GET",route="/v1/me"'] == 3


def test_each_app_has_its_own_registry(settings: Settings, db: Database) -> None:
    first, second = create_app(settings, database=db), create_app(settings, database=db)
    with TestClient(first) as client:
        client.get("/healthz")
    with TestClient(second) as client:
        text = client.get("/metrics").text
    assert 'route="/healthz"' not in text


def test_a_flood_of_probes_checks_the_dependencies_once(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes need no credential: however many arrive at once, one check runs per half
    second (a check of a hung dependency leaves a thread behind)."""
    runs: list[int] = []
    real = service.run_checks

    def counted(*args: Any, **kwargs: Any) -> dict[str, str]:
        runs.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "run_checks", counted)
    readiness = service.Readiness(settings, db, ttl_s=60)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: readiness.results(), range(64)))
    assert answers == [{"database": "ok"}] * 64
    assert len(runs) == 1


def test_every_metric_of_the_platform_is_in_the_reference() -> None:
    """docs/operations.md's metrics reference names every aiaas_ metric the code registers."""
    from pathlib import Path

    from aiaas.metrics import Metrics

    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    # As exposed: counters end in _total, info metrics in _info.
    suffix = {"counter": "_total", "info": "_info"}
    names = {
        family.name + suffix.get(family.type, "")
        for family in Metrics().registry.collect()
        if family.name.startswith("aiaas_")
    }
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == []
