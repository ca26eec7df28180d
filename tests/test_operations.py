from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database, alembic_config, code_revisions
from aiaas.main import create_app
from aiaas.migrate import downgrade, upgrade
from aiaas.operations import service
from tests.conftest import scratch_database
from tests.factories import Account
from tests.helpers import assert_problem


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_the_database_and_its_schema(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "schema": "ok"}}


def test_readyz_checks_the_broker_when_configured(
    settings: Settings, db: Database, redis_url: str
) -> None:
    app = create_app(settings.model_copy(update={"broker_url": redis_url}), database=db)
    with TestClient(app) as client:
        response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "schema": "ok", "broker": "ok"}


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


@pytest.fixture
def own_database(test_database_url: str | None, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own, whose schema it may move."""
    scratch = scratch_database(test_database_url, tmp_path)
    yield scratch.url
    scratch.drop()


def _readyz(settings: Settings, url: str) -> Any:
    with TestClient(create_app(settings.model_copy(update={"database_url": url}))) as client:
        return client.get("/readyz")


def test_readyz_is_not_ready_while_the_schema_is_behind_the_code(
    settings: Settings, own_database: str
) -> None:
    """A new gateway started before its migration ran gets no traffic, and needs no restart
    once the migration has run."""
    (head,) = code_revisions().heads
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    upgrade(own_database)
    downgrade(own_database, "-1")

    body = assert_problem(_readyz(settings, own_database), 503)
    expected = f"at {previous}, code needs {head}: run aiaas db upgrade"
    assert body["checks"] == {"database": "ok", "schema": expected}
    assert body["detail"] == f"Not ready: schema is down ({expected})"

    database = Database.from_url(own_database)
    try:
        readiness = service.Readiness(settings, database, ttl_s=0)
        assert readiness.results()["schema"] == expected
        upgrade(own_database)
        assert readiness.results() == {"database": "ok", "schema": "ok"}
    finally:
        database.dispose()


def test_readiness_names_a_database_never_migrated(settings: Settings, own_database: str) -> None:
    database = Database.from_url(own_database)
    try:
        results = service.Readiness(settings, database).results()
    finally:
        database.dispose()
    (head,) = code_revisions().heads
    assert results == {
        "database": "ok",
        "schema": f"not migrated, code needs {head}: run aiaas db upgrade",
    }


def test_readyz_stays_ready_on_a_schema_ahead_of_the_code(
    settings: Settings, own_database: str
) -> None:
    """An old gateway during a roll-out, after the new release migrated: expand/contract
    migrations keep it working, so it keeps its traffic, and the check says why."""
    upgrade(own_database)
    database = Database.from_url(own_database)
    try:
        with database.engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        database.dispose()

    response = _readyz(settings, own_database)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok, ahead (9999)"},
    }


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
    assert answers == [{"database": "ok", "schema": "ok"}] * 64
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
