"""Training jobs in embedded mode: from scratch, events, cancel, checks before queueing,
feedback and fine-tuning, tenancy."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.factories import Account, register, unique, wait_training, wait_until
from tests.helpers import assert_problem
from tests.trainings.conftest import parse_sse

CLASSIFICATION_KEYS = {"accuracy", "precision", "recall", "f1", "per_class", "confusion_matrix"}
# Enough for this seed's model of iris to reach the accuracy that longer training gives it.
IRIS_EPOCHS = 10


def start(client: TestClient, account: Account, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/trainings", json=body, headers=account.headers)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    assert created["status"] == "queued"
    assert response.headers["location"] == f"/v1/trainings/{created['id']}"
    return created


def test_iris_from_scratch_registers_a_version_with_metrics(
    client: TestClient, trainer: Account
) -> None:
    name = unique("iris")
    created = start(
        client,
        trainer,
        model=name,
        dataset="builtin:iris",
        architecture="mlp",
        hyperparameters={"epochs": IRIS_EPOCHS, "seed": 3},
    )
    done = wait_training(client, created["id"], trainer.headers)
    assert done["status"] == "succeeded", done
    assert done["version"] == 1
    assert done["progress"] == 1.0
    assert done["epoch"] == done["epochs"] == IRIS_EPOCHS
    assert done["started_at"]
    assert done["finished_at"]

    version = client.get(f"/v1/models/{name}/versions/1", headers=trainer.headers).json()
    metrics = version["metrics"]
    assert set(metrics) >= CLASSIFICATION_KEYS
    assert metrics["accuracy"] >= 0.9
    assert set(metrics["per_class"]) == {"setosa", "versicolor", "virginica"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.trace() / matrix.sum() == pytest.approx(metrics["accuracy"])
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, IRIS_EPOCHS + 1))
    assert version["labels"] == ["setosa", "versicolor", "virginica"]

    # The model it made is private to the trainer and predicts at once.
    answer = client.post(
        f"/v1/models/{name}/predict",
        json={"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        headers=trainer.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == ["setosa", "virginica"]
    other = register(client)
    assert_problem(client.get(f"/v1/trainings/{created['id']}", headers=other.headers), 404)
    assert_problem(client.get(f"/v1/models/{name}", headers=other.headers), 404)

    # The stream replays everything to a late client, and what it missed to a returning one.
    stream = client.get(f"/v1/trainings/{created['id']}/events", headers=trainer.headers)
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(stream.text)
    assert [f["event"] for f in frames] == ["epoch"] * IRIS_EPOCHS + ["end"]
    assert [f["id"] for f in frames] == list(range(1, IRIS_EPOCHS + 2))
    first = frames[0]["data"]
    assert set(first) == {
        "epoch",
        "epochs",
        "train_loss",
        "val_loss",
        "metrics",
        "progress",
        "eta_s",
    }
    assert first["epoch"] == 1
    assert first["epochs"] == IRIS_EPOCHS
    assert first["progress"] == pytest.approx(1 / IRIS_EPOCHS)
    assert frames[-1]["data"] == {"status": "succeeded", "version": 1}
    # The end event's id is the number of epochs plus one: ask for the last two epochs' and it.
    last_seen = IRIS_EPOCHS - 2
    again = client.get(
        f"/v1/trainings/{created['id']}/events",
        headers={**trainer.headers, "Last-Event-ID": str(last_seen)},
    )
    assert [f["id"] for f in parse_sse(again.text)] == [last_seen + 1, last_seen + 2, last_seen + 3]

    listed = client.get("/v1/trainings", headers=trainer.headers).json()
    assert [t["id"] for t in listed["data"]] == [created["id"]]
    finished = client.post(f"/v1/trainings/{created['id']}/cancel", headers=trainer.headers)
    assert_problem(finished, 409)


def test_regression_reports_mae_rmse_r2(client: TestClient, trainer: Account) -> None:
    created = start(
        client,
        trainer,
        model=unique("diabetes"),
        dataset="builtin:diabetes",
        architecture="mlp",
        hyperparameters={"epochs": 2},
    )
    done = wait_training(client, created["id"], trainer.headers)
    assert done["status"] == "succeeded", done
    assert {"mae", "rmse", "r2"} <= set(done["metrics"])
    assert done["metrics"]["rmse"] > 0
    exposed = client.get("/metrics").text
    succeeded = re.search(r'^aiaas_trainings_total\{status="succeeded"\} (\S+)$', exposed, re.M)
    assert succeeded is not None
    assert float(succeeded.group(1)) >= 1
    epochs = re.search(r"^aiaas_training_epoch_seconds_count (\S+)$", exposed, re.M)
    assert epochs is not None
    assert float(epochs.group(1)) >= 2  # one observation per epoch
    assert re.search(r"^aiaas_trainings_running 0\.0$", exposed, re.M)


def test_cancel_stops_a_running_training(client: TestClient, trainer: Account) -> None:
    created = start(
        client,
        trainer,
        model=unique("digits"),
        dataset="builtin:digits",
        architecture="cnn",
        hyperparameters={"epochs": 1000},
    )
    url = f"/v1/trainings/{created['id']}"
    wait_until(
        lambda: client.get(url, headers=trainer.headers).json()["epoch"] >= 1,
        timeout=60,
        what="the training's first epoch",
    )
    canceled = client.post(f"/v1/trainings/{created['id']}/cancel", headers=trainer.headers)
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert_problem(
        client.post(f"/v1/trainings/{created['id']}/cancel", headers=trainer.headers), 409
    )
    frames = parse_sse(
        client.get(f"/v1/trainings/{created['id']}/events", headers=trainer.headers).text
    )
    assert frames[-1]["event"] == "end"
    assert frames[-1]["data"] == {"status": "canceled", "version": None}
    body = client.get(url, headers=trainer.headers).json()
    assert body["status"] == "canceled"
    assert body["version"] is None
    # The worker thread notices at its next epoch and stops: nothing runs on, no version.
    wait_until(
        lambda: "aiaas_trainings_running 0.0" in client.get("/metrics").text,
        timeout=60,
        what="the canceled training to stop running",
    )
    stopped_at = client.get(url, headers=trainer.headers).json()["epoch"]
    assert stopped_at < 1000
    model = client.get(f"/v1/models/{body['model']}/versions", headers=trainer.headers)
    assert model.json()["data"] == []


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({"dataset": "builtin:iris", "architecture": "cnn"}, 422, ["body", "dataset"]),
        ({"dataset": "builtin:digits-flat", "architecture": "rnn"}, 422, ["body", "dataset"]),
        ({"dataset": "builtin:nope", "architecture": "mlp"}, 404, None),
        ({"dataset": "0b3c8f6e-98a4-4a39-9d43-5a3a4b1a3b6d", "architecture": "mlp"}, 404, None),
        ({"dataset": "builtin:iris", "architecture": "transformer"}, 422, ["body", "architecture"]),
        ({"dataset": "builtin:iris"}, 422, None),
        ({"dataset": "builtin:iris", "architecture": "mlp", "base_version": 1}, 422, None),
        (
            {"dataset": ["builtin:iris", "builtin:wine"], "architecture": "mlp"},
            422,
            ["body", "dataset", 1],
        ),
        (
            {"dataset": "builtin:iris", "architecture": "mlp", "config": {"output_dim": 5}},
            422,
            ["body", "config", "output_dim"],
        ),
        (
            {"dataset": "builtin:iris", "architecture": "mlp", "hyperparameters": {"epochs": 0}},
            422,
            ["body", "hyperparameters", "epochs"],
        ),
        (
            {
                "dataset": "builtin:iris",
                "architecture": "mlp",
                "hyperparameters": {"learning_rate": 11},
            },
            422,
            ["body", "hyperparameters", "learning_rate"],
        ),
        (
            {
                "dataset": "builtin:iris",
                "architecture": "mlp",
                "hyperparameters": {"batch_size": 5000},
            },
            422,
            ["body", "hyperparameters", "batch_size"],
        ),
        (
            {
                "dataset": "builtin:iris",
                "architecture": "mlp",
                "hyperparameters": {"val_fraction": 0.5, "test_fraction": 0.5},
            },
            422,
            ["body", "hyperparameters", "test_fraction"],
        ),
        (
            {
                "dataset": "builtin:iris",
                "architecture": "mlp",
                "hyperparameters": {"early_stopping_patience": 0},
            },
            422,
            ["body", "hyperparameters", "early_stopping_patience"],
        ),
    ],
)
def test_bad_trainings_are_refused_before_queueing(
    client: TestClient,
    trainer: Account,
    body: dict[str, Any],
    status: int,
    loc: list[Any] | None,
) -> None:
    sent = {"model": unique("bad"), **body}
    problem = assert_problem(
        client.post("/v1/trainings", json=sent, headers=trainer.headers), status
    )
    if loc is not None:
        assert any(e["loc"][: len(loc)] == loc for e in problem["errors"]), problem
    assert client.get("/v1/trainings", headers=trainer.headers).json()["data"] == []
    # Nothing is left behind: not even the model a successful request would have made.
    assert_problem(client.get(f"/v1/models/{sent['model']}", headers=trainer.headers), 404)


def test_train_scope_is_needed(client: TestClient, trainer: Account) -> None:
    key = client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["predict"]}, headers=trainer.headers
    ).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": unique("x"), "dataset": "builtin:iris", "architecture": "mlp"}
    problem = assert_problem(client.post("/v1/trainings", json=body, headers=headers), 403)
    assert problem["required_scope"] == "train"
    assert_problem(client.get("/v1/datasets", headers=headers), 403)


def test_feedback_then_fine_tune_records_base_metrics(client: TestClient, trainer: Account) -> None:
    name = unique("iris-ft")
    first = start(
        client,
        trainer,
        model=name,
        dataset="builtin:iris",
        architecture="mlp",
        hyperparameters={"epochs": 1},
    )
    assert wait_training(client, first["id"], trainer.headers)["status"] == "succeeded"
    patched = client.patch(
        f"/v1/models/{name}", json={"capture_inputs": True}, headers=trainer.headers
    )
    assert patched.status_code == 200, patched.text

    rows = [[5.0, 3.4, 1.5, 0.2], [6.0, 2.2, 5.0, 1.5], [5.9, 3.0, 4.2, 1.5]]
    truth = ["setosa", "virginica", "versicolor"]
    for row, label in zip(rows, truth, strict=True):
        answer = client.post(
            f"/v1/models/{name}/predict", json={"inputs": [row]}, headers=trainer.headers
        )
        assert answer.status_code == 200, answer.text
        given = client.post(
            f"/v1/predictions/{answer.json()['id']}/feedback",
            json={"label": label},
            headers=trainer.headers,
        )
        assert given.status_code == 200, given.text
        assert given.json()["feedback"] == [label]
    wrong = client.post(
        f"/v1/predictions/{answer.json()['id']}/feedback",
        json={"label": "rose"},
        headers=trainer.headers,
    )
    assert_problem(wrong, 422)

    dataset = client.get(f"/v1/datasets/feedback:{name}", headers=trainer.headers).json()
    assert dataset["source"] == "feedback"
    assert dataset["rows"] == 3
    assert dataset["input_shape"] == [4]
    assert dataset["classes"] == ["setosa", "versicolor", "virginica"]
    # Feedback is its giver's: another account (here without any) sees no such rows.
    other = register(client)
    assert_problem(client.get(f"/v1/datasets/feedback:{name}", headers=other.headers), 404)

    tuned = start(
        client,
        trainer,
        model=name,
        base_version=1,
        dataset=["builtin:iris", f"feedback:{name}"],
        hyperparameters={"epochs": 1, "learning_rate": 0.001},
    )
    done = wait_training(client, tuned["id"], trainer.headers)
    assert done["status"] == "succeeded", done
    assert done["version"] == 2
    assert done["base_version"] == 1
    version = client.get(f"/v1/models/{name}/versions/2", headers=trainer.headers).json()
    base = version["metrics"]["base"]
    assert base["version"] == 1
    assert set(base["metrics"]) >= CLASSIFICATION_KEYS
    assert set(version["metrics"]) >= CLASSIFICATION_KEYS


def test_datasets_list_and_read(client: TestClient, trainer: Account) -> None:
    listed = client.get("/v1/datasets", headers=trainer.headers).json()
    ids = [d["id"] for d in listed["data"]]
    for builtin in (
        "builtin:digits",
        "builtin:digits-flat",
        "builtin:iris",
        "builtin:wine",
        "builtin:breast_cancer",
        "builtin:diabetes",
        "builtin:waves",
    ):
        assert builtin in ids
    digits = client.get("/v1/datasets/builtin:digits", headers=trainer.headers).json()
    assert digits["input_shape"] == [1, 8, 8]
    assert digits["classes"] == list(range(10))
    assert digits["source"] == "builtin"
    flat = client.get("/v1/datasets/builtin:digits-flat", headers=trainer.headers).json()
    assert flat["input_shape"] == [64]
    diabetes = client.get("/v1/datasets/builtin:diabetes", headers=trainer.headers).json()
    assert diabetes["task"] == "regression"
    assert diabetes["classes"] is None
    waves = client.get("/v1/datasets/builtin:waves", headers=trainer.headers).json()
    assert waves["input_shape"][1] == 1
    assert len(waves["classes"]) >= 3
    assert_problem(client.delete("/v1/datasets/builtin:iris", headers=trainer.headers), 403)
