"""Feedback labels follow the classes of the version that made the prediction.
(A model registered without labels may be trained on a dataset whose classes have names.)"""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import Account, unique, wait_training
from tests.helpers import assert_problem


def test_feedback_follows_the_classes_of_the_version_that_predicted(
    client: TestClient, trainer: Account
) -> None:
    # Registered without labels; trained on a dataset whose classes have names.
    name = unique("unlabelled")
    created = client.post(
        "/v1/models", json={"name": name, "task": "classification"}, headers=trainer.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["labels"] is None
    training = client.post(
        "/v1/trainings",
        json={
            "model": name,
            "dataset": "builtin:iris",
            "architecture": "mlp",
            "hyperparameters": {"epochs": 1},
        },
        headers=trainer.headers,
    )
    assert training.status_code == 202, training.text
    assert wait_training(client, training.json()["id"], trainer.headers)["status"] == "succeeded"
    assert client.patch(
        f"/v1/models/{name}", json={"capture_inputs": True}, headers=trainer.headers
    ).is_success

    answer = client.post(
        f"/v1/models/{name}/predict", json={"inputs": [[5.0, 3.4, 1.5, 0.2]]}, **_h(trainer)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in ("setosa", "versicolor", "virginica")
    url = f"/v1/predictions/{answer.json()['id']}/feedback"
    assert_problem(client.post(url, json={"label": 0}, headers=trainer.headers), 422)
    given = client.post(url, json={"label": "setosa"}, headers=trainer.headers)
    assert given.status_code == 200, given.text

    dataset = client.get(f"/v1/datasets/feedback:{name}", headers=trainer.headers).json()
    assert dataset["classes"] == ["setosa", "versicolor", "virginica"]
    tuned = client.post(
        "/v1/trainings",
        json={
            "model": name,
            "base_version": 1,
            "dataset": ["builtin:iris", f"feedback:{name}"],
            "hyperparameters": {"epochs": 1},
        },
        headers=trainer.headers,
    )
    assert tuned.status_code == 202, tuned.text
    assert wait_training(client, tuned.json()["id"], trainer.headers)["status"] == "succeeded"


def _h(account: Account) -> dict[str, dict[str, str]]:
    return {"headers": account.headers}
