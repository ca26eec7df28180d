"""What one async job may store: bounded outputs, large ones in the artifact store, and an
expiry for finished jobs' payloads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from aiaas import blobs
from aiaas.config import Settings
from aiaas.db import Database, utcnow
from aiaas.main import create_app
from aiaas.predictions import service
from aiaas.predictions.models import Prediction
from aiaas.storage import open_store
from tests.factories import Account, Published, publish, register, unique, wait_job
from tests.helpers import assert_problem

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def live(settings: Settings, committed_url: str) -> Settings:
    return settings.model_copy(
        update={"database_url": committed_url, "reconcile_interval_s": 3600.0, "max_output_mb": 1}
    )


@pytest.fixture
def client(live: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(live)) as test_client:
        yield test_client


@pytest.fixture
def owner(client: TestClient) -> Account:
    return register(client)


def regressor(client: TestClient, owner: Account, output_dim: int) -> Published:
    config = {"input_dim": 4, "hidden": [2], "output_dim": output_dim}
    return publish(client, owner, name=unique("out"), task="regression", config=config)


def count_jobs(live: Settings) -> int:
    database = Database.from_url(live.resolved_database_url)
    try:
        with database.session() as session:
            return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)
    finally:
        database.dispose()


def test_a_job_whose_outputs_would_be_over_the_bound_is_refused_and_stores_nothing(
    client: TestClient, owner: Account, live: Settings
) -> None:
    # 65,536 outputs a row, 5 rows: 1.25 MB as float32, over the 1 MB limit, from a
    # 200-byte request.
    name = regressor(client, owner, 65_536).name
    before = count_jobs(live)
    refused = client.post(
        "/v1/predictions", json={"model": name, "inputs": [ROW] * 5}, headers=owner.headers
    )
    problem = assert_problem(refused, 422)
    assert problem["errors"][0]["loc"] == ["body", "inputs"]
    assert "5 row(s)" in problem["detail"]
    assert "limit of 1 MB" in problem["detail"]
    assert count_jobs(live) == before


def test_large_outputs_go_to_the_artifact_store(
    client: TestClient, owner: Account, live: Settings
) -> None:
    name, module = regressor(client, owner, 20_000)  # 2 rows: 160 KB of outputs
    rows = [ROW, [6.7, 3.0, 5.2, 2.3]]
    job = client.post("/v1/predictions", json={"model": name, "inputs": rows}, **_h(owner)).json()
    done = wait_job(client, job["id"], owner.headers)
    assert done["status"] == "succeeded", done
    with torch.inference_mode():
        want = module(torch.tensor(rows)).numpy()
    np.testing.assert_allclose(np.asarray(done["outputs"], np.float32), want, rtol=1e-5, atol=1e-6)
    listed = client.get("/v1/predictions", headers=owner.headers).json()["data"]
    assert next(j for j in listed if j["id"] == job["id"])["outputs"] is None

    database = Database.from_url(live.resolved_database_url)
    try:
        with database.session() as session:
            row = session.get(Prediction, uuid.UUID(job["id"]))
            assert row is not None
            assert row.outputs is None
            assert row.outputs_sha256 is not None
            sha = row.outputs_sha256
    finally:
        database.dispose()
    assert open_store(live.resolved_artifacts_url).exists(sha)


def test_finished_jobs_lose_their_payloads_after_the_retention(
    client: TestClient, owner: Account, live: Settings
) -> None:
    name = regressor(client, owner, 20_000).name
    old = client.post("/v1/predictions", json={"model": name, "inputs": [ROW]}, **_h(owner))
    recent = client.post("/v1/predictions", json={"model": name, "inputs": [ROW]}, **_h(owner))
    old_id, recent_id = old.json()["id"], recent.json()["id"]
    for job_id in (old_id, recent_id):
        assert wait_job(client, job_id, owner.headers)["status"] == "succeeded"
    store = open_store(live.resolved_artifacts_url)
    database = Database.from_url(live.resolved_database_url)
    try:
        with database.session() as session:
            session.execute(
                update(Prediction)
                .where(Prediction.id == uuid.UUID(old_id))
                .values(finished_at=utcnow() - timedelta(days=31))
            )
            session.commit()
            shas = {
                session.get(Prediction, uuid.UUID(i)).outputs_sha256  # type: ignore[union-attr]
                for i in (old_id, recent_id)
            }
        assert len(shas) == 1  # equal inputs, equal outputs: one blob for both
        expired = service.expire_finished(
            database, store, older_than=timedelta(days=30), held=blobs.held
        )
        assert expired == 1
    finally:
        database.dispose()
    gone = client.get(f"/v1/predictions/{old_id}", headers=owner.headers).json()
    assert gone["status"] == "succeeded"
    assert gone["expired_at"] is not None
    assert gone["outputs"] is None
    assert gone["predictions"] is None
    assert gone["timings"]["total_s"] is not None
    # The blob is still another job's: it stays until that one expires too.
    kept = client.get(f"/v1/predictions/{recent_id}", headers=owner.headers).json()
    assert kept["expired_at"] is None
    assert len(kept["outputs"][0]) == 20_000
    assert store.exists(next(iter(shas)) or "")


def _h(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}
