"""Migrations produce exactly the models' schema, and undo cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from aiaas.db import make_engine
from aiaas.migrate import downgrade, upgrade
from aiaas.models import metadata
from tests.conftest import scratch_database


@pytest.fixture
def empty_database(test_database_url: str | None, tmp_path: Path) -> Iterator[str]:
    scratch = scratch_database(test_database_url, tmp_path)
    yield scratch.url
    scratch.drop()


def test_upgrade_head_matches_the_models_then_downgrade_base_empties(
    empty_database: str,
) -> None:
    upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            drift = compare_metadata(context, metadata)
            tables = set(inspect(connection).get_table_names())
        assert drift == [], f"models and migrations differ: {drift}"
        assert set(metadata.tables) <= tables

        downgrade(empty_database, "base")
        with engine.connect() as connection:
            left = set(inspect(connection).get_table_names()) - {"alembic_version"}
        assert left == set()

        # And back up again: the downgrade left nothing that blocks a fresh upgrade.
        upgrade(empty_database)
        with engine.connect() as connection:
            assert set(metadata.tables) <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
