"""The ``aiaas`` command, run as a user runs it: a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect, select

from aiaas.accounts.models import User
from aiaas.db import Database

AIAAS = [sys.executable, "-m", "aiaas"]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environment.update(env)
    return subprocess.run(
        AIAAS + args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "db", "users"):
        assert command in result.stdout


def test_db_upgrade_then_create_admin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgraded = run(["db", "upgrade"], tmp_path, AIAAS_DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    database = Database.from_url(url)
    try:
        assert "users" in inspect(database.engine).get_table_names()

        created = run(
            ["users", "create-admin", "--email", "Root@Example.com", "--password", "long enough"],
            tmp_path,
            AIAAS_DATABASE_URL=url,
        )
        assert created.returncode == 0, created.stderr
        assert "created admin root@example.com" in created.stdout
        again = run(
            ["users", "create-admin", "--email", "root@example.com"],
            tmp_path,
            AIAAS_DATABASE_URL=url,
        )
        assert again.returncode == 0, again.stderr
        assert "promoted" in again.stdout
        bad = run(
            ["users", "create-admin", "--email", "not-an-email", "--password", "long enough"],
            tmp_path,
            AIAAS_DATABASE_URL=url,
        )
        assert bad.returncode != 0
        with database.session() as session:
            users = session.scalars(select(User)).all()
        assert [(u.email, u.role) for u in users] == [("root@example.com", "admin")]
    finally:
        database.dispose()


def test_default_database_is_sqlite_under_var(tmp_path: Path) -> None:
    result = run(["db", "upgrade"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "aiaas.db").exists()


def test_serve_refuses_production_without_a_secret(tmp_path: Path) -> None:
    result = run(["serve", "--port", "1"], tmp_path, AIAAS_ENV="production")
    assert result.returncode == 2
    assert "AIAAS_SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr
