"""The ``aiaas`` command, run as a user runs it: a real process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import inspect, select

from aiaas.accounts.models import User
from aiaas.cli import curve, output
from aiaas.cli.remote import problem_lines
from aiaas.client import AiaasError, PredictResult, RateLimited, Version
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
    server = ("serve", "worker", "db", "users")
    client = ("register", "login", "keys", "models", "versions", "alias", "predict", "datasets")
    for command in (*server, *client, "train", "usage"):
        assert re.search(rf"│ {command} ", result.stdout), command


def test_the_loss_curve_is_drawn_with_characters() -> None:
    lines = curve.render([("train", [1.0, 0.6, 0.5]), ("val", [0.8, 0.2, None])], width=20)
    grid = lines[:8]
    # The highest value labels the top row, where train starts; the lowest the bottom row,
    # where val ends half-way (it has no third value).
    assert grid[0].startswith("  1 ┤●")
    assert re.fullmatch(r"0\.2 ┤ +○", grid[-1])
    assert len(grid[-1]) == 5 + 10
    assert all(len(row) <= 5 + 20 for row in grid)
    assert lines[8] == "    └" + "─" * 20
    assert lines[9] == "     epoch 1" + " " * 12 + "3"
    assert lines[10] == "     ● train   ○ val"
    # Where the two series meet, one mark says so; nothing to draw, no lines.
    same = curve.render([("a", [2.0, 1.0]), ("b", [2.0, 1.0])], width=4)
    assert {mark for row in same[:8] for mark in row[5:] if mark != " "} == {curve.OVERLAP}
    assert curve.render([("a", []), ("b", [None])]) == []


def test_json_output_is_plain_json() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    version = Version(1, "mlp", {"hidden": [8]}, {"shape": [4]}, created_at=when)
    result = PredictResult(np.array([[0.25, 0.75]], dtype=np.float32), ["b"], "m", 1)
    assert output.plain(version)["created_at"] == "2026-01-02T03:04:00+00:00"
    assert output.plain([result])[0]["outputs"] == [[0.25, 0.75]]
    assert json.loads(json.dumps(output.plain({"v": version, "path": Path("/x")})))["path"] == "/x"


def test_a_problem_reads_as_its_title_detail_and_fields() -> None:
    problem = {
        "title": "Invalid input",
        "detail": "The request is not valid: name.",
        "errors": [{"loc": ["body", "name"], "msg": "bad slug"}, {"loc": [], "msg": "whole"}],
    }
    assert problem_lines(AiaasError(422, problem)) == [
        "error: Invalid input: The request is not valid: name.",
        "  name: bad slug",
        "  -: whole",
    ]
    limited = RateLimited(429, {"title": "Too many requests"}, retry_after=2.0)
    assert problem_lines(limited) == ["error: Too many requests (retry after 2 s)"]


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
