"""Trainings on a real `aiaas worker --queues training` over Redis, and one that survives the
worker's SIGKILL by resuming from its last checkpoint."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Account, wait_training, wait_until
from tests.helpers import json_lines
from tests.integration.conftest import Deployment
from tests.trainings.conftest import parse_sse


def start(gateway: TestClient, owner: Account, **body: Any) -> str:
    response = gateway.post("/v1/trainings", json=body, headers=owner.headers)
    assert response.status_code == 202, response.text
    training_id: str = response.json()["id"]
    return training_id


def test_training_on_a_worker_registers_a_version(
    gateway: TestClient, owner: Account, deployment: Deployment, tmp_path: Path
) -> None:
    process = deployment.start_worker(tmp_path, queues="training")
    deployment.wait_ready(process)
    name = f"it-iris-{uuid.uuid4().hex[:6]}"
    training_id = start(
        gateway,
        owner,
        model=name,
        dataset="builtin:iris",
        architecture="mlp",
        hyperparameters={"epochs": 40},
    )
    done = wait_training(gateway, training_id, owner.headers)
    assert done["status"] == "succeeded", done
    version = gateway.get(f"/v1/models/{name}/versions/{done['version']}", headers=owner.headers)
    metrics = version.json()["metrics"]
    for key in ("accuracy", "precision", "recall", "f1", "per_class", "confusion_matrix"):
        assert key in metrics
    assert metrics["accuracy"] >= 0.85
    assert len(metrics["history"]) == 40
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_sigkilled_training_resumes_from_its_checkpoint(
    gateway: TestClient, owner: Account, deployment: Deployment, tmp_path: Path
) -> None:
    doomed = deployment.start_worker(tmp_path, queues="training")
    deployment.wait_ready(doomed)
    name = f"it-digits-{uuid.uuid4().hex[:6]}"
    training_id = start(
        gateway,
        owner,
        model=name,
        dataset="builtin:digits",
        architecture="cnn",
        # Small enough for quick epochs, slow enough (a few per second) to be killed mid-run.
        config={"blocks": [{"channels": 8, "kernel": 3}], "hidden": [32]},
        hyperparameters={"epochs": 12, "seed": 7, "batch_size": 16},
    )

    def state() -> dict[str, Any]:
        body: dict[str, Any] = gateway.get(
            f"/v1/trainings/{training_id}", headers=owner.headers
        ).json()
        return body

    wait_until(lambda: state()["epoch"] >= 3, timeout=120, what=lambda: f"epoch 3: {state()}")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    at_kill = state()
    assert at_kill["status"] == "running"
    assert 3 <= at_kill["epoch"] < 12

    replacement = deployment.start_worker(tmp_path, queues="training")
    deployment.wait_ready(replacement)
    done = wait_training(gateway, training_id, owner.headers, timeout=180)
    assert done["status"] == "succeeded", done
    assert done["epoch"] == 12

    # Epochs went on from the checkpoint: each epoch's event exists once, in order, and the
    # new worker says where it resumed.
    frames = parse_sse(
        gateway.get(f"/v1/trainings/{training_id}/events", headers=owner.headers).text
    )
    epochs = [f["data"]["epoch"] for f in frames if f["event"] == "epoch"]
    assert epochs == list(range(1, 13))
    assert frames[-1]["data"] == {"status": "succeeded", "version": 1}
    log = deployment.logs[deployment.workers.index(replacement)].read_text()
    resumed = [line["event"] for line in json_lines(log) if "resumes after epoch" in line["event"]]
    assert resumed, log[-3000:]
    assert int(resumed[0].rsplit(" ", 1)[1]) >= at_kill["epoch"]
    versions = gateway.get(f"/v1/models/{name}/versions", headers=owner.headers).json()["data"]
    assert [v["version"] for v in versions] == [1]
    replacement.send_signal(signal.SIGTERM)
    replacement.wait(timeout=30)
