from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from aiaas.accounts.deps import require_scope
from aiaas.accounts.models import ApiKey
from aiaas.db import Database, utcnow
from tests.factories import Account
from tests.helpers import assert_problem, bearer

LISTED_FIELDS = {
    "id", "name", "scopes", "prefix", "created_at", "expires_at", "last_used_at", "revoked",
}  # fmt: skip

KeyFactory = Callable[..., dict[str, Any]]


def test_created_key_is_shown_once_with_its_listed_document(
    client: TestClient, account: Account
) -> None:
    response = client.post(
        "/v1/api-keys",
        json={"name": "ci", "scopes": ["predict", "models:read"], "expires_in_days": 30},
        headers=account.headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == LISTED_FIELDS | {"key"}
    assert body["key"].startswith("aiaas_sk_")
    assert len(body["key"]) >= 40
    assert body["key"].startswith(body["prefix"])
    assert len(body["prefix"]) > len("aiaas_sk_")
    assert sorted(body["scopes"]) == ["models:read", "predict"]
    assert body["revoked"] is False
    assert body["last_used_at"] is None
    assert body["expires_at"] is not None

    listed = client.get("/v1/api-keys", headers=account.headers).json()
    assert listed["next_cursor"] is None
    [item] = listed["data"]
    assert set(item) == LISTED_FIELDS
    assert item["id"] == body["id"]
    assert body["key"] not in str(listed)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "k", "scopes": ["admin"]}, "scopes"),
        ({"name": "k", "scopes": ["predict"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "k", "scopes": ["predict"], "expires_in_days": -3}, "expires_in_days"),
        ({"name": "k", "scopes": ["predict"], "expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "", "scopes": []}, "name"),
        ({"scopes": []}, "name"),
        ({"name": "k"}, "scopes"),
        ({"name": "k", "scopes": "predict"}, "scopes"),
    ],
)
def test_bad_key_requests_are_refused_naming_the_field(
    client: TestClient, account: Account, db: Database, payload: dict[str, Any], field: str
) -> None:
    body = assert_problem(client.post("/v1/api-keys", json=payload, headers=account.headers), 422)
    assert any(field in item["loc"] for item in body["errors"]), body
    with db.session() as session:
        assert session.scalars(select(ApiKey)).all() == []


def test_api_keys_cannot_manage_keys(
    client: TestClient, make_key: KeyFactory, account: Account
) -> None:
    key = make_key(["models:read", "models:write", "predict", "train"])
    headers = bearer(key["key"])
    assert_problem(client.get("/v1/api-keys", headers=headers), 403)
    assert_problem(
        client.post("/v1/api-keys", json={"name": "x", "scopes": []}, headers=headers), 403
    )
    assert_problem(client.delete(f"/v1/api-keys/{key['id']}", headers=headers), 403)


def test_the_key_authenticates_and_records_last_use(
    client: TestClient, make_key: KeyFactory, account: Account
) -> None:
    key = make_key(["predict"])
    me = client.get("/v1/me", headers=bearer(key["key"]))
    assert me.status_code == 200
    assert me.json()["email"] == account.email
    [listed] = client.get("/v1/api-keys", headers=account.headers).json()["data"]
    assert listed["last_used_at"] is not None


def test_revoked_key_is_refused_on_the_next_request(
    client: TestClient, make_key: KeyFactory, account: Account
) -> None:
    key = make_key(["predict"])
    assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
    assert client.delete(f"/v1/api-keys/{key['id']}", headers=account.headers).status_code == 204
    response = client.get("/v1/me", headers=bearer(key["key"]))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    [listed] = client.get("/v1/api-keys", headers=account.headers).json()["data"]
    assert listed["revoked"] is True
    # Revoking twice is harmless.
    assert client.delete(f"/v1/api-keys/{key['id']}", headers=account.headers).status_code == 204


def test_expired_key_is_refused(client: TestClient, make_key: KeyFactory, db: Database) -> None:
    key = make_key(["predict"], expires_in_days=1)
    assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200
    with db.session() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(key["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    response = client.get("/v1/me", headers=bearer(key["key"]))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer aiaas_sk_not-a-real-key"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "bearer"},
    ],
)
def test_missing_or_bad_credentials_get_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/v1/me", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_another_accounts_key_is_not_found(
    client: TestClient, make_key: KeyFactory, make_account: Callable[..., Account]
) -> None:
    key = make_key(["predict"])
    stranger = make_account()
    assert_problem(client.delete(f"/v1/api-keys/{key['id']}", headers=stranger.headers), 404)
    assert_problem(client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=stranger.headers), 404)
    assert client.get("/v1/api-keys", headers=stranger.headers).json()["data"] == []
    # Still valid for its owner.
    assert client.get("/v1/me", headers=bearer(key["key"])).status_code == 200


def test_key_without_the_routes_scope_gets_403_naming_it(
    app: FastAPI, client: TestClient, make_key: KeyFactory, account: Account
) -> None:
    @app.get("/test-only/predict-scope", dependencies=[Depends(require_scope("predict"))])
    def scoped() -> dict[str, str]:
        return {"ok": "yes"}

    narrow = make_key(["models:read"])
    response = client.get("/test-only/predict-scope", headers=bearer(narrow["key"]))
    body = assert_problem(response, 403)
    assert "predict" in body["detail"]
    assert body["required_scope"] == "predict"
    wide = make_key(["predict"])
    assert client.get("/test-only/predict-scope", headers=bearer(wide["key"])).status_code == 200
    # A login token acts with all of its account's rights.
    assert client.get("/test-only/predict-scope", headers=account.headers).status_code == 200


def test_key_list_is_paginated_newest_first(
    client: TestClient, make_key: KeyFactory, account: Account
) -> None:
    made = [make_key([], name=f"k{i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/api-keys", params=params, headers=account.headers).json()
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    bad = client.get("/v1/api-keys", params={"cursor": "garbage!"}, headers=account.headers)
    assert_problem(bad, 422)


def test_database_holds_no_plaintext_key_or_password(
    client: TestClient, make_key: KeyFactory, account: Account, db: Database
) -> None:
    secret = make_key(["predict"])["key"]
    with db.session() as session:
        connection = session.connection()
        dumped: list[str] = []
        for table in ("users", "api_keys"):
            for row in connection.exec_driver_sql(f"SELECT * FROM {table}"):  # noqa: S608
                dumped.extend(str(value) for value in row)
    everything = "\n".join(dumped)
    assert account.email in everything  # the dump did read the rows
    assert secret not in everything
    assert secret[len("aiaas_sk_") :] not in everything
    assert account.password not in everything
