"""Shared fixtures: a migrated database per run, a rolled-back transaction per test, an app,
and accounts and keys on it (made by tests/factories.py, which the fixtures only hand out).

The suite runs on SQLite by default and on PostgreSQL when ``AIAAS_TEST_DATABASE_URL`` names one;
there a fresh database is created for the run and dropped after it. Every test that reaches a
database does so through the ``test_database_url`` fixture, and is marked ``database`` for it:
``make test`` runs the whole suite on SQLite, then only ``-m database`` on PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from aiaas.config import Settings
from aiaas.db import Database, make_engine
from aiaas.main import create_app
from aiaas.migrate import upgrade
from aiaas.tracing import Tracing
from tests.factories import PASSWORD, Account, api_key, register
from tests.helpers import service_reachable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test_database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


@dataclass
class ScratchDatabase:
    url: str
    drop: Callable[[], None]


def scratch_database(base_url: str | None, tmp_dir: Path) -> ScratchDatabase:
    """An empty database: a SQLite file, or a new PostgreSQL database next to ``base_url``."""
    if not base_url:
        path = tmp_dir / f"aiaas-{uuid.uuid4().hex[:8]}.db"
        return ScratchDatabase(f"sqlite:///{path}", lambda: path.unlink(missing_ok=True))
    url = make_url(base_url)
    name = f"aiaas_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return ScratchDatabase(url.set(database=name).render_as_string(hide_password=False), drop)


@pytest.fixture(scope="session")
def test_database_url() -> str | None:
    return os.environ.get("AIAAS_TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def database_url(
    test_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    scratch = scratch_database(test_database_url, tmp_path_factory.mktemp("db"))
    upgrade(scratch.url)
    yield scratch.url
    scratch.drop()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Database]:
    """A Database whose sessions live inside one transaction that is rolled back after the test.

    Service code commits as usual; each commit only releases a savepoint.
    """
    connection = engine.connect()
    transaction = connection.begin()
    factory = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    yield Database(engine, factory)
    transaction.rollback()
    connection.close()


@pytest.fixture(scope="module")
def committed_url(
    test_database_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database of the module's own whose commits stick: for code that runs on
    threads or processes of its own (jobs, trainings), which cannot share a rolled-back
    connection."""
    scratch = scratch_database(test_database_url, tmp_path_factory.mktemp("committed-db"))
    upgrade(scratch.url)
    yield scratch.url
    scratch.drop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        env="test",
        var_dir=tmp_path / "var",
        database_url=database_url,
        secret_key=SecretStr("test-secret-key-test-secret-key-0123456789"),
        # Cheap hashes keep the suite fast; the production cost is the default.
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        # Tests that want the demo models ask for them.
        demo_models=False,
    )


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    return create_app(settings, database=db)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def live_settings(settings: Settings, committed_url: str, tmp_path: Path) -> Settings:
    """The settings on the module's committed database: for code that writes from threads or
    processes of its own (trainings, jobs, sync predictions kept for feedback)."""
    return settings.model_copy(
        update={
            "database_url": committed_url,
            "artifacts_url": str(tmp_path / "artifacts"),
            "reconcile_interval_s": 3600.0,
        }
    )


@pytest.fixture
def live_client(live_settings: Settings) -> Iterator[TestClient]:
    """A client of an app on ``live_settings``; a folder whose tests all need one makes it its
    ``client``."""
    with TestClient(create_app(live_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def make_account(client: TestClient) -> Callable[..., Account]:
    def make(email: str | None = None, password: str = PASSWORD) -> Account:
        return register(client, email=email, password=password)

    return make


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account()


@pytest.fixture
def make_key(client: TestClient, account: Account) -> Callable[..., dict[str, Any]]:
    def make(
        scopes: list[str] | None = None, owner: Account | None = None, **extra: Any
    ) -> dict[str, Any]:
        return api_key(client, owner or account, scopes if scopes is not None else [], **extra)

    return make


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis; required in CI, skipped on a workstation that has none."""
    if not service_reachable("127.0.0.1", 6379):
        if os.environ.get("CI"):
            pytest.fail("Redis is not reachable on 127.0.0.1:6379 in CI")
        pytest.skip("no Redis on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def traced() -> Iterator[tuple[Tracing, Any]]:
    """Tracing on OpenTelemetry's in-memory exporter, and the exporter (its finished spans)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()
