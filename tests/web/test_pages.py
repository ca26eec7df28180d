"""The owner pages through the ASGI app: forms that change things, and forms refused with a
clear message that change nothing. (tests/web/test_dashboard.py does the same in Chromium.)"""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from aiaas.ml.weights import save_safetensors
from tests.factories import MLP_CONFIG, Account, create_model, publish, register, seeded_module
from tests.helpers import bearer
from tests.web.conftest import csrf_of


def test_create_a_model_and_refuse_a_bad_name(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/models/new")
    bad = client.post("/models/new", data={"csrf_token": token, "name": "Not A Slug"})
    assert bad.status_code == 422
    assert 'aria-invalid="true"' in bad.text
    assert "Not A Slug" in bad.text
    assert client.get("/v1/models", headers=account.headers).json()["data"] == []
    made = client.post(
        "/models/new",
        data={"csrf_token": token, "name": "web-iris", "labels": "a, b\nc", "visibility": "public"},
        follow_redirects=False,
    )
    assert made.headers["location"] == "/models/web-iris"
    model = client.get("/v1/models/web-iris", headers=account.headers).json()
    assert model["labels"] == ["a", "b", "c"]
    assert model["visibility"] == "public"
    assert "Model &#39;web-iris&#39; created." in client.get("/models/web-iris").text
    listing = client.get("/models?q=IRIS").text
    assert "/models/web-iris" in listing
    assert "/models/web-iris" not in client.get("/models?q=nothing-like-it").text


def test_wrong_weights_show_each_tensor_and_store_nothing(
    client: TestClient, account: Account
) -> None:
    create_model(client, account, "web-upload")
    wrong = save_safetensors(seeded_module(config={**MLP_CONFIG, "hidden": [16]}))
    token = csrf_of(client, "/models/web-upload")
    refused = client.post(
        "/models/web-upload/versions",
        data={"csrf_token": token, "architecture": "mlp", "config": json.dumps(MLP_CONFIG)},
        files={"weights": ("w.safetensors", wrong, "application/octet-stream")},
    )
    assert refused.status_code == 422
    rows = re.findall(r'<tr class="problem">(.*?)</tr>', refused.text, re.S)
    assert any("linears.0.weight" in row and "[8, 4]" in row and "[16, 4]" in row for row in rows)
    versions = client.get("/v1/models/web-upload/versions", headers=account.headers).json()
    assert versions["data"] == []

    not_json = client.post(
        "/models/web-upload/versions",
        data={"csrf_token": token, "architecture": "mlp", "config": "{oops"},
        files={"weights": ("w.safetensors", wrong, "application/octet-stream")},
    )
    assert not_json.status_code == 422
    assert "not JSON" in not_json.text


def test_upload_then_move_production(client: TestClient, account: Account) -> None:
    create_model(client, account, "web-alias")
    token = csrf_of(client, "/models/web-alias")
    for seed in (1, 2):
        done = client.post(
            "/models/web-alias/versions",
            data={"csrf_token": token, "architecture": "mlp", "config": json.dumps(MLP_CONFIG)},
            files={"weights": ("w.safetensors", save_safetensors(seeded_module(seed=seed)))},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
    moved = client.post(
        "/models/web-alias/aliases",
        data={"csrf_token": token, "alias": "production", "version": "2"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    aliases = client.get("/v1/models/web-alias", headers=account.headers).json()["aliases"]
    assert aliases == {"production": 2}
    page = client.get("/models/web-alias").text
    assert 'aria-label="Make v1 production"' in page
    assert 'aria-label="Make v2 production"' not in page


def test_another_accounts_private_model_is_not_found(client: TestClient, account: Account) -> None:
    other = register(client)
    create_model(client, other, "web-private")
    page = client.get("/models/web-private")
    assert page.status_code == 404
    assert "No model named" in page.text
    token = csrf_of(client, "/models")
    refused = client.post(
        "/models/web-private/delete", data={"csrf_token": token, "confirm": "web-private"}
    )
    assert refused.status_code == 404
    assert client.get("/v1/models/web-private", headers=other.headers).status_code == 200


def test_keys_are_shown_once_and_revoked(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/keys")
    nameless = client.post("/keys", data={"csrf_token": token, "name": " "})
    assert nameless.status_code == 422
    bad_days = client.post(
        "/keys",
        data={"csrf_token": token, "name": "k", "scopes": "predict", "expires_in_days": "soon"},
    )
    assert bad_days.status_code == 422
    assert "whole number of days" in bad_days.text
    made = client.post(
        "/keys", data={"csrf_token": token, "name": "ci", "scopes": ["predict", "models:read"]}
    )
    secret = re.search(r'value="(aiaas_sk_[^"]+)"', made.text)
    assert made.status_code == 200
    assert secret
    assert client.get("/v1/me", headers=bearer(secret.group(1))).status_code == 200
    assert secret.group(1) not in client.get("/keys").text
    key_id = client.get("/v1/api-keys", headers=account.headers).json()["data"][0]["id"]
    client.post(f"/keys/{key_id}/revoke", data={"csrf_token": token})
    assert client.get("/v1/me", headers=bearer(secret.group(1))).status_code == 401


def test_the_playground_predicts_with_the_session_and_its_token(
    client: TestClient, account: Account
) -> None:
    published = publish(client, account, labels=["a", "b", "c"])
    token = csrf_of(client, f"/models/{published.name}")
    body = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    url = f"/models/{published.name}/playground"
    assert client.post(url, json=body).status_code == 403
    answer = client.post(url, json=body, headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in ("a", "b", "c")
    wrong = client.post(url, json={"inputs": [[1, 2]]}, headers={"X-CSRF-Token": token})
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")


def test_a_hostile_label_cannot_break_out_of_the_pages_data(
    client: TestClient, account: Account
) -> None:
    label = "</script><!--<script>"
    published = publish(client, account, labels=[label, "b", "c"])
    page = client.get(f"/models/{published.name}").text
    spec = re.search(r'<script type="application/json" id="playground-spec">(.*?)</script>', page)
    assert spec
    assert "<" not in spec.group(1)
    assert json.loads(spec.group(1))["labels"][0] == label
