"""Usage in the distributed mode: the gateway counts the sync predictions a real worker
answered, the worker counts the async jobs it finished and flushes them to the usage table."""

from __future__ import annotations

import subprocess
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Account, publish, wait_job, wait_until
from tests.helpers import assert_problem
from tests.integration.test_distributed import ROWS


def model_totals(gateway: TestClient, owner: Account, model_id: str) -> dict[str, Any]:
    usage = gateway.get("/v1/usage", params={"granularity": "hour"}, headers=owner.headers)
    assert usage.status_code == 200, usage.text
    (model,) = [m for m in usage.json()["models"] if m["model_id"] == model_id]
    totals: dict[str, Any] = model["totals"]
    return totals


def test_predictions_through_a_worker_are_counted(
    gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes]
) -> None:
    name = publish(gateway, owner).name
    model_id = gateway.get(f"/v1/models/{name}", headers=owner.headers).json()["id"]
    url = f"/v1/models/{name}/predict"
    for _ in range(3):
        answer = gateway.post(url, json={"inputs": ROWS.tolist()}, headers=owner.headers)
        assert answer.status_code == 200, answer.text
    assert_problem(gateway.post(url, json={"inputs": [[1.0]]}, headers=owner.headers), 422)

    # The gateway that answered counts its sync predictions at once.
    totals = model_totals(gateway, owner, model_id)
    assert (totals["predictions"], totals["rows"], totals["errors"]) == (4, 3 * len(ROWS), 1)
    assert totals["compute_s"] > 0

    job = gateway.post(
        "/v1/predictions", json={"model": name, "inputs": ROWS.tolist()}, headers=owner.headers
    ).json()
    assert wait_job(gateway, job["id"], owner.headers)["status"] == "succeeded"
    # The worker counted the job; it shows once the worker's next flush (AIAAS_USAGE_FLUSH_S,
    # 10 s here) has added it to the table.

    def flushed() -> dict[str, Any] | None:
        totals = model_totals(gateway, owner, model_id)
        return totals if totals["predictions"] != 4 else None

    totals = wait_until(flushed, timeout=60, interval=0.2, what="the worker to flush its usage")
    assert (totals["predictions"], totals["rows"], totals["errors"]) == (5, 4 * len(ROWS), 1)

    # Deleting the model deletes its job, not what the job used.
    assert gateway.delete(f"/v1/models/{name}", headers=owner.headers).status_code == 204
    after = model_totals(gateway, owner, model_id)
    assert {**after, "start": None} == {**totals, "start": None}  # start: the period's
