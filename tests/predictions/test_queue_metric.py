"""Embedded sync predictions observe their wait in the batcher as the queue stage."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.predictions.conftest import Deployed


def queue_count(client: TestClient) -> float:
    text = client.get("/metrics").text
    match = re.search(
        r'^aiaas_prediction_latency_seconds_count\{stage="queue"\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_sync_predictions_observe_the_queue_stage(
    client: TestClient, deploy: Callable[..., Deployed]
) -> None:
    model = deploy()
    before = queue_count(client)
    for _ in range(5):
        answer = client.post(
            f"/v1/models/{model.name}/predict",
            json={"inputs": [[5.1, 3.5, 1.4, 0.2]]},
            headers=model.headers,
        )
        assert answer.status_code == 200, answer.text
    assert queue_count(client) == before + 5
