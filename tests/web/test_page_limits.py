"""The dashboard is no way round an account's rate limits: the playground takes from the
predict buckets, and forms that create things from the registry's and training's."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from tests.factories import Account, api_key, publish
from tests.helpers import bearer
from tests.web.conftest import csrf_of

ROW = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    limited = settings.model_copy(
        update={"rate_limit_predict": "2/minute", "rate_limit_train": "1/minute"}
    )
    return create_app(limited, database=db)


def test_the_playground_takes_from_the_predict_limit(client: TestClient, account: Account) -> None:
    name = publish(client, account).name
    token = csrf_of(client, f"/models/{name}")
    url = f"/models/{name}/playground"
    answers = [client.post(url, json=ROW, headers={"X-CSRF-Token": token}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) > 0
    explained = client.post(f"{url}/explain", json=ROW, headers={"X-CSRF-Token": token})
    assert explained.status_code == 429
    # The session is the account's login credential, as a login token is; an API key is a
    # credential of its own, whose bucket the playground left untouched.
    assert (
        client.post(f"/v1/models/{name}/predict", json=ROW, headers=account.headers).status_code
        == 429
    )
    key = bearer(api_key(client, account, ["predict"])["key"])
    assert client.post(f"/v1/models/{name}/predict", json=ROW, headers=key).status_code == 200


def test_a_training_form_takes_from_the_training_limit(
    client: TestClient, account: Account
) -> None:
    token = csrf_of(client, "/trainings/new")
    form = {
        "csrf_token": token,
        "model": "web-limited",
        "dataset": "builtin:iris",
        "start": "scratch",
        "architecture": "mlp",
        "hp.epochs": "0",  # refused by validation: it still costs its call
    }
    assert client.post("/trainings/new", data=form).status_code == 422
    limited = client.post("/trainings/new", data=form)
    assert limited.status_code == 429
    assert "Too many requests" in limited.text
    key = bearer(api_key(client, account, ["train"])["key"])
    assert client.get("/v1/trainings", headers=key).json()["data"] == []
