"""The training pages through the ASGI app: the form generated from the hyperparameters'
schema, a refused form that queues nothing, a training started from the form, its live feed
(cookie-read, while /v1 keeps to bearer credentials), and cancel. (Chromium:
tests/web/test_training_browser.py.)"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.factories import Account, register, wait_training
from tests.web.conftest import csrf_of, sign_in


@pytest.fixture
def client(live_client: TestClient) -> TestClient:
    # Trainings run on threads of their own: they need a database whose commits stick.
    return live_client


def trainings(client: TestClient, account: Account) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = client.get("/v1/trainings", headers=account.headers).json()[
        "data"
    ]
    return listed


def test_the_form_has_each_hyperparameter_with_its_range(
    client: TestClient, account: Account
) -> None:
    page = client.get("/trainings/new").text
    epochs = re.search(r'<input id="f-hp.epochs"[^>]*>', page)
    assert epochs
    assert 'min="1"' in epochs.group(0)
    assert 'max="1000"' in epochs.group(0)
    assert 'step="1"' in epochs.group(0)
    assert re.search(r'<select id="f-hp.optimizer"[^>]*>\s*<option value="adam" selected>', page)
    assert '<option value="builtin:iris"' in page
    for field_id in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', page):
        assert f'for="{field_id}"' in page, f"{field_id} has no label"


def test_a_refused_form_says_why_and_queues_nothing(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/trainings/new")
    form = {
        "csrf_token": token,
        "model": "web-train",
        "dataset": "builtin:iris",
        "start": "scratch",
        "architecture": "mlp",
        "hp.epochs": "0",
    }
    refused = client.post("/trainings/new", data=form)
    assert refused.status_code == 422
    assert re.search(r'id="f-hp.epochs"[^>]*aria-invalid="true"', refused.text)
    assert 'value="web-train"' in refused.text  # what was typed stays
    unknown = client.post("/trainings/new", data={**form, "hp.epochs": "2", "dataset": "nope"})
    assert unknown.status_code == 404
    no_token = client.post("/trainings/new", data={**form, "csrf_token": "", "hp.epochs": "2"})
    assert no_token.status_code == 403
    assert trainings(client, account) == []
    assert client.get("/v1/models/web-train", headers=account.headers).status_code == 404


def test_a_training_started_from_the_form_is_followed_and_listed(
    client: TestClient, account: Account
) -> None:
    token = csrf_of(client, "/trainings/new")
    started = client.post(
        "/trainings/new",
        data={
            "csrf_token": token,
            "model": "web-iris-train",
            "dataset": "builtin:iris",
            "start": "scratch",
            "architecture": "mlp",
            "hp.epochs": "3",
            "hp.learning_rate": "0.05",
            "hp.seed": "7",
        },
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    training_id = started.headers["location"].rsplit("/", 1)[1]
    done = wait_training(client, training_id, account.headers)
    assert done["status"] == "succeeded"
    assert done["hyperparameters"]["epochs"] == 3
    assert done["hyperparameters"]["learning_rate"] == 0.05

    feed = client.get(f"/trainings/{training_id}/events")
    assert feed.headers["content-type"].startswith("text/event-stream")
    assert feed.text.count("event: epoch") == 3
    assert "event: end" in feed.text
    # The API's own stream takes no cookie.
    assert client.get(f"/v1/trainings/{training_id}/events").status_code == 401

    page = client.get(f"/trainings/{training_id}").text
    assert f'href="/models/web-iris-train/versions/{done["version"]}"' in page
    assert 'id="cancel-form"' not in page
    listing = client.get("/trainings").text
    assert f'href="/trainings/{training_id}"' in listing
    assert "succeeded" in listing

    finished = client.post(f"/trainings/{training_id}/cancel", data={"csrf_token": token})
    assert finished.status_code == 409
    assert "already finished" in finished.text


def test_another_accounts_training_is_not_found(client: TestClient, account: Account) -> None:
    token = csrf_of(client, "/trainings/new")
    started = client.post(
        "/trainings/new",
        data={
            "csrf_token": token,
            "model": "web-mine",
            "dataset": "builtin:iris",
            "start": "scratch",
            "architecture": "mlp",
            "hp.epochs": "1",
        },
        follow_redirects=False,
    )
    training_id = started.headers["location"].rsplit("/", 1)[1]
    wait_training(client, training_id, account.headers)
    other = register(client)
    client.cookies.clear()
    sign_in(client, other)
    assert client.get(f"/trainings/{training_id}").status_code == 404
    assert client.get(f"/trainings/{training_id}/events").status_code == 404
    other_token = csrf_of(client, "/trainings")
    cancel = client.post(f"/trainings/{training_id}/cancel", data={"csrf_token": other_token})
    assert cancel.status_code == 404
