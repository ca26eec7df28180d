"""Every 4xx/5xx is problem+json, and bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aiaas.accounts.models import ApiKey, User
from aiaas.db import Database
from tests.factories import PASSWORD, Account
from tests.helpers import assert_problem

JSON = {"content-type": "application/json"}
TWO_MB_JSON = '{"email": "a@example.com", "password": "' + "x" * (2 * 1024 * 1024) + '"}'


def _counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        users = session.scalar(select(func.count()).select_from(User)) or 0
        keys = session.scalar(select(func.count()).select_from(ApiKey)) or 0
    return users, keys


JSON_ROUTES = [("/v1/auth/register", False), ("/v1/auth/login", False), ("/v1/api-keys", True)]

BAD_BODIES: list[tuple[str, dict[str, Any], int]] = [
    ("missing fields", {"json": {}}, 422),
    ("wrong types", {"json": {"email": 42, "password": ["x"], "name": 1, "scopes": 3}}, 422),
    ("array body", {"json": [1, 2, 3]}, 422),
    ("null body", {"content": b"null", "headers": JSON}, 422),
    ("broken JSON", {"content": b'{"email": ', "headers": JSON}, 422),
    ("not JSON", {"content": b"email=a@b.c", "headers": {"content-type": "text/plain"}}, 422),
    ("form body", {"data": {"email": "a@example.com", "password": PASSWORD}}, 422),
    ("2 MB body", {"content": TWO_MB_JSON.encode(), "headers": JSON}, 413),
    ("extra field", {"json": {"email": "e@x.org", "password": PASSWORD, "role": "admin"}}, 422),
]  # fmt: skip


@pytest.mark.parametrize(("route", "authed"), JSON_ROUTES)
@pytest.mark.parametrize(("case", "kwargs", "status"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_bodies_get_problems_and_write_nothing(
    client: TestClient,
    db: Database,
    account: Account,
    route: str,
    authed: bool,
    case: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    before = _counts(db)
    headers = dict(kwargs.pop("headers", {}))
    if authed:
        headers.update(account.headers)
    response = client.post(route, headers=headers, **kwargs)
    body = assert_problem(response, status)
    if status == 422:
        assert body["errors"], body
        assert all(isinstance(item["loc"], list) and item["msg"] for item in body["errors"])
    assert _counts(db) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "no-at-sign.example.com", "password": PASSWORD}, "email"),
        ({"email": "a@", "password": PASSWORD}, "email"),
        ({"email": "ok@example.com", "password": "7chars!"}, "password"),
        ({"email": "ok@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
    ],
)
def test_registration_names_the_bad_field(
    client: TestClient, db: Database, payload: dict[str, Any], field: str
) -> None:
    body = assert_problem(client.post("/v1/auth/register", json=payload), 422)
    assert [item for item in body["errors"] if field in item["loc"]], body
    assert field in body["detail"]
    assert _counts(db) == (0, 0)


def test_validation_errors_never_echo_the_input(client: TestClient) -> None:
    response = client.post("/v1/auth/register", json={"email": "x", "password": "hunter2"})
    assert "hunter2" not in response.text


def test_chunked_body_over_the_limit_is_refused(client: TestClient, db: Database) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"email": "big@example.com", "password": "'
        for _ in range(40):
            yield b"y" * 64 * 1024
        yield b'"}'

    response = client.post(
        "/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)
    assert _counts(db) == (0, 0)


def test_unknown_route_and_wrong_method_are_problems(client: TestClient) -> None:
    missing = assert_problem(client.get("/v1/no-such-thing"), 404)
    assert "/v1/no-such-thing" in missing["detail"]
    wrong = client.put("/v1/auth/login", json={})
    assert_problem(wrong, 405)
    assert "POST" in wrong.headers["allow"]


def test_path_parameter_of_the_wrong_type_is_a_problem(
    client: TestClient, account: Account
) -> None:
    body = assert_problem(client.delete("/v1/api-keys/not-a-uuid", headers=account.headers), 422)
    assert any("id" in item["loc"] for item in body["errors"])


def test_server_errors_show_no_internals(app: FastAPI, client: TestClient) -> None:
    @app.get("/test-only/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail in /srv/aiaas/app.py")

    response = client.get("/test-only/boom")
    body = assert_problem(response, 500)
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert body["title"] == "Internal server error"
