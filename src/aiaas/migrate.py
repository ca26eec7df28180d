"""Run Alembic migrations from code (``aiaas db upgrade``, ``aiaas serve``, tests).

Where the scripts are and which revisions they define is ``db``'s to say (``alembic_config``,
``code_revisions``): readiness compares those with the database without running anything."""

from __future__ import annotations

from alembic import command

from aiaas.db import alembic_config

__all__ = ["alembic_config", "downgrade", "upgrade"]


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
