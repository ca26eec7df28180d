from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aiaas.accounts import security
from aiaas.accounts.models import User
from aiaas.db import Database
from tests.factories import PASSWORD, Account
from tests.helpers import assert_problem, bearer


def test_register_returns_the_account_without_secrets(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/register", json={"email": "Grace.Hopper@Example.COM", "password": PASSWORD}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert body["email"] == "grace.hopper@example.com"


def test_email_is_unique_case_insensitively(client: TestClient, db: Database) -> None:
    first = client.post(
        "/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert first.status_code == 201
    again = client.post(
        "/v1/auth/register", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    assert_problem(again, 409)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_login_gives_a_bearer_token(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/auth/login", json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert client.get("/v1/me", headers=bearer(body["access_token"])).status_code == 200


def test_wrong_password_and_unknown_email_look_the_same(
    client: TestClient, account: Account
) -> None:
    wrong = client.post("/v1/auth/login", json={"email": account.email, "password": "not it!!"})
    unknown = client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    for response in (wrong, unknown):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert wrong.json() == unknown.json() | {"instance": wrong.json()["instance"]}


def test_unknown_email_still_costs_an_argon2_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real = security._hasher

    class CountingHasher:
        def verify(self, hash_: str, password: str) -> bool:
            calls.append(hash_)
            return bool(real.verify(hash_, password))

    monkeypatch.setattr(security, "_hasher", CountingHasher())
    assert security.verify_password(None, PASSWORD) is False
    assert calls
    assert calls[0].startswith("$argon2id$")


def test_me_shows_role_and_webhook_secret_but_no_hash(client: TestClient, account: Account) -> None:
    body = client.get("/v1/me", headers=account.headers).json()
    assert set(body) == {"id", "email", "role", "created_at", "webhook_secret"}
    assert body["role"] == "user"
    assert body["webhook_secret"].startswith("whsec_")
    assert body["id"] == account.id


def test_each_account_has_its_own_webhook_secret(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    secrets = {client.get("/v1/me", headers=make_account().headers).json()["webhook_secret"]}
    secrets.add(client.get("/v1/me", headers=make_account().headers).json()["webhook_secret"])
    assert len(secrets) == 2


def test_passwords_are_stored_as_argon2id(db: Database, account: Account) -> None:
    with db.session() as session:
        stored = session.scalars(select(User.password_hash)).all()
    assert stored
    assert all(h.startswith("$argon2id$") for h in stored)
    assert all(PASSWORD not in h for h in stored)


def test_forged_and_expired_tokens_are_refused(client: TestClient, account: Account) -> None:
    forged = security.issue_access_token(
        uuid.UUID(account.id), secret="another-secret-another-secret-another-secret", ttl_s=60
    )
    assert_problem(client.get("/v1/me", headers=bearer(forged)), 401)
    expired = security.issue_access_token(
        uuid.UUID(account.id),
        secret="test-secret-key-test-secret-key-0123456789",
        ttl_s=-1,
    )
    response = client.get("/v1/me", headers=bearer(expired))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
