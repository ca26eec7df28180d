"""GET /v1/usage reports exactly what an account did; other accounts see none of it."""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from aiaas.config import Settings
from aiaas.datasets.models import Dataset
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.metering.meter import UsageMeter
from aiaas.metering.models import UsageHour
from tests.factories import (
    api_key,
    publish,
    register,
    unique,
    upload_dataset,
    wait_job,
    wait_training,
)
from tests.helpers import assert_problem, bearer

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def client(settings: Settings, committed_url: str, tmp_path: Path) -> Iterator[TestClient]:
    live = settings.model_copy(
        update={
            "database_url": committed_url,
            "artifacts_url": str(tmp_path / "artifacts"),
            "reconcile_interval_s": 3600.0,
            "usage_flush_s": 3600.0,  # the test flushes by hand
        }
    )
    with TestClient(create_app(live)) as test_client:
        yield test_client


def metric(text: str, name: str, account: str) -> float:
    match = re.search(rf'^{name}\{{account="{account}"\}} (\S+)$', text, re.M)
    assert match is not None, name
    return float(match.group(1))


def test_usage_equals_what_the_account_did(client: TestClient, committed_url: str) -> None:
    owner, other = register(client), register(client)
    name = publish(client, owner, name=unique("use")).name
    for rows in (1, 2, 3):
        answer = client.post(
            f"/v1/models/{name}/predict", json={"inputs": [ROW] * rows}, headers=owner.headers
        )
        assert answer.status_code == 200, answer.text
    bad = client.post(f"/v1/models/{name}/predict", json={"inputs": [[1.0]]}, headers=owner.headers)
    assert_problem(bad, 422)
    job = client.post(
        "/v1/predictions", json={"model": name, "inputs": [ROW] * 4}, headers=owner.headers
    ).json()
    assert wait_job(client, job["id"], owner.headers)["status"] == "succeeded"
    training = client.post(
        "/v1/trainings",
        json={
            "model": f"{name}-t",
            "dataset": "builtin:iris",
            "architecture": "mlp",
            "hyperparameters": {"epochs": 1},
        },
        headers=owner.headers,
    ).json()
    trained = wait_training(client, training["id"], owner.headers)
    assert trained["status"] == "succeeded"
    csv = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
    dataset = upload_dataset(
        client, owner, csv, filename="d.csv", content_type="text/csv", name="d"
    )
    assert dataset.status_code == 201, dataset.text

    # Before any flush: this gateway's unflushed counts are included.
    now = datetime.now(UTC)
    period = {
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    first = client.get("/v1/usage", params=period, headers=owner.headers)
    assert first.status_code == 200, first.text
    meter: UsageMeter = client.app.state.usage_meter  # type: ignore[attr-defined]
    assert meter.flush(client.app.state.db) >= 1  # type: ignore[attr-defined]
    usage = client.get("/v1/usage", params=period, headers=owner.headers).json()
    assert usage == first.json()  # the same figures, from the table now

    (model,) = [m for m in usage["models"] if m["model"] == name]
    totals = model["totals"]
    assert totals["predictions"] == 3 + 1 + 1  # three sync, one refused, one async
    assert totals["rows"] == 1 + 2 + 3 + 4
    assert totals["errors"] == 1
    assert totals["compute_s"] > 0
    assert usage["granularity"] == "day"
    assert usage["to"] > usage["from"]
    assert usage["trainings"]["count"] == 1
    assert usage["trainings"]["compute_s"] > 0

    versions = [
        client.get(f"/v1/models/{n}/versions/1", headers=owner.headers).json()["size_bytes"]
        for n in (name, f"{name}-t")
    ]
    stored = usage["stored_bytes"]
    assert stored["weights"] == sum(versions)
    database = Database.from_url(committed_url)
    try:
        with database.session() as session:
            dataset_row = session.get(Dataset, uuid.UUID(dataset.json()["id"]))
            assert dataset_row is not None
            assert stored["datasets"] == dataset_row.size_bytes > 0
    finally:
        database.dispose()
    assert stored["total"] == stored["weights"] + stored["datasets"] + stored["jobs"]

    nothing = client.get("/v1/usage", headers=other.headers).json()
    assert nothing["models"] == []
    assert nothing["trainings"]["count"] == 0

    hourly = client.get("/v1/usage", params={"granularity": "hour"}, headers=owner.headers).json()
    (hourly_model,) = [m for m in hourly["models"] if m["model"] == name]
    assert sum(b["predictions"] for b in hourly_model["buckets"]) == 5
    assert all(b["start"].endswith(":00:00Z") for b in hourly_model["buckets"])

    metrics = client.get("/metrics").text
    assert metric(metrics, "aiaas_account_predictions_total", owner.id) == 5
    assert metric(metrics, "aiaas_account_rows_total", owner.id) == 10
    assert metric(metrics, "aiaas_account_errors_total", owner.id) == 1
    assert metric(metrics, "aiaas_account_compute_seconds_total", owner.id) == pytest.approx(
        totals["compute_s"]
    )
    assert metric(metrics, "aiaas_account_trainings_total", owner.id) == 1
    assert metric(
        metrics, "aiaas_account_training_compute_seconds_total", owner.id
    ) == pytest.approx(usage["trainings"]["compute_s"])
    account_lines = [line for line in metrics.splitlines() if line.startswith("aiaas_account_")]
    assert not any(other.id in line for line in account_lines)
    assert "use-" not in "".join(account_lines)

    # Deleting the models deletes their jobs and trainings, not what they used.
    for deleted in (name, f"{name}-t"):
        gone = client.delete(f"/v1/models/{deleted}", headers=owner.headers)
        assert gone.status_code == 204, gone.text
    after = client.get("/v1/usage", params=period, headers=owner.headers).json()
    (kept,) = [m for m in after["models"] if m["model_id"] == model["model_id"]]
    assert kept["totals"] == totals
    assert after["trainings"] == usage["trainings"]


def test_bad_periods_are_refused(client: TestClient) -> None:
    owner = register(client)
    now = datetime.now(UTC)
    for params in (
        {"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()},
        {"from": (now - timedelta(days=40)).isoformat(), "granularity": "hour"},
        {"granularity": "minute"},
    ):
        assert_problem(client.get("/v1/usage", params=params, headers=owner.headers), 422)
    key = api_key(client, owner, ["predict"])["key"]
    assert_problem(client.get("/v1/usage", headers=bearer(key)), 403)


def test_the_meter_adds_to_existing_rows_and_keeps_counts_when_a_flush_fails(
    committed_url: str,
) -> None:
    database = Database.from_url(committed_url)
    account, model = uuid.uuid4(), uuid.uuid4()
    try:
        meter = UsageMeter()
        at = time.time()
        meter.record(account, model, rows=2, compute_s=0.5, error=False, at=at)
        meter.flush(database)
        meter.record(account, model, rows=3, compute_s=0.25, error=True, at=at)
        meter.record_training(account, model, compute_s=2.0, finished=False, at=at)
        meter.record_training(account, model, compute_s=1.5, finished=True, at=at)
        # Nothing listens on port 1 of loopback: the flush fails at once.
        broken = Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none", timeout_s=1)
        with pytest.raises(OperationalError):
            meter.flush(broken)
        broken.dispose()
        ((_, counts),) = meter.pending(account).items()
        assert (counts.predictions, counts.rows, counts.errors) == (1, 3, 1)
        meter.flush(database)
        assert meter.pending(account) == {}
        with database.session() as session:
            row = session.scalars(select(UsageHour).where(UsageHour.account_id == account)).one()
            assert (row.predictions, row.rows, row.compute_s, row.errors) == (2, 5, 0.75, 1)
            assert (row.trainings, row.training_compute_s) == (1, 3.5)
    finally:
        database.dispose()


def test_the_meter_is_bounded() -> None:
    meter = UsageMeter(max_keys=3)
    for _ in range(5):
        meter.record(uuid.uuid4(), uuid.uuid4(), rows=1, compute_s=0.0, error=False)
    assert len(meter._counts) == 3
    assert meter.dropped == 2


def test_the_meter_counts_every_record_from_many_threads() -> None:
    meter = UsageMeter()
    accounts = [uuid.uuid4() for _ in range(2)]
    model = uuid.uuid4()
    per_thread, threads = 5_000, 8
    start = threading.Barrier(threads)

    def work(i: int) -> None:
        start.wait()
        for n in range(per_thread):
            meter.record(accounts[n % 2], model, rows=2, compute_s=0.5, error=n % 5 == 0)
            if n % 100 == 0:
                meter.record_training(accounts[i % 2], model, compute_s=1.0, finished=True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    pending = [c for account in accounts for c in meter.pending(account).values()]
    assert sum(c.predictions for c in pending) == per_thread * threads
    assert sum(c.rows for c in pending) == 2 * per_thread * threads
    assert sum(c.errors for c in pending) == per_thread // 5 * threads
    assert sum(c.trainings for c in pending) == per_thread // 100 * threads
    assert sum(c.predictions for c in meter.totals.values()) == per_thread * threads
