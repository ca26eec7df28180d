"""An explanation in distributed mode: gateway → Celery task on the predict queue → a real
`aiaas worker` process → the gateway's reply list; it answers as the embedded mode does."""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from aiaas.main import create_app
from aiaas.serving import wire
from tests.factories import Account, publish
from tests.integration.conftest import Deployment

LSTM: dict[str, Any] = {
    "cell": "lstm",
    "input_size": 2,
    "hidden_size": 8,
    "seq_len": 5,
    "output_dim": 3,
}


def test_a_distributed_explanation_equals_the_embedded_one(
    gateway: TestClient,
    owner: Account,
    deployment: Deployment,
    worker: subprocess.Popen[bytes],
) -> None:
    name, _ = publish(gateway, owner, architecture="rnn", config=LSTM, labels=["a", "b", "c"])
    x = np.random.default_rng(2).standard_normal((3, 5, 2)).astype(np.float32)
    body = {"inputs": x.tolist(), "target": "b", "steps": 32}
    distributed = gateway.post(f"/v1/models/{name}/explain", json=body, headers=owner.headers)
    assert distributed.status_code == 200, distributed.text
    log = deployment.logs[deployment.workers.index(worker)]
    assert f"{wire.EXPLAIN_TASK}[" in log.read_text(), "the worker ran no explain task"
    # The same database and artifacts, with no broker: the model runs in this process.
    embedded_settings = deployment.settings.model_copy(update={"broker_url": None})
    with TestClient(create_app(embedded_settings)) as embedded:
        local = embedded.post(f"/v1/models/{name}/explain", json=body, headers=owner.headers)
    assert local.status_code == 200, local.text
    got, want = distributed.json(), local.json()
    assert np.array(got["attributions"]).shape == x.shape
    for field in ("model", "version", "method", "target", "predictions"):
        assert got[field] == want[field], field
    for field in ("attributions", "outputs", "completeness_gap"):
        np.testing.assert_allclose(got[field], want[field], rtol=1e-5, atol=1e-6, err_msg=field)
