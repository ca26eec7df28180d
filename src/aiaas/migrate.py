"""Run Alembic migrations from code (``aiaas db upgrade``, ``aiaas serve``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    ini = _ROOT / "alembic.ini"
    if not ini.exists():
        raise FileNotFoundError(f"alembic.ini not found at {ini}; run from a source checkout")
    config = Config(str(ini))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    if url:
        # ConfigParser treats % as interpolation; a password may contain one.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
