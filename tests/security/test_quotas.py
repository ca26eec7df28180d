"""Quotas per account: each one refuses with 403 quota-exceeded (naming the quota, its limit and
the current use) before anything is stored or queued, lets through what stays below it, leaves
other accounts alone, and shows on GET /v1/quotas."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select, text

from aiaas.accounts.models import User
from aiaas.config import Settings
from aiaas.datasets.models import Dataset
from aiaas.db import Database, utcnow
from aiaas.main import create_app
from aiaas.ml.weights import save_safetensors
from aiaas.predictions.models import Prediction
from aiaas.quotas import Quota, Quotas, limits_for
from aiaas.registry.models import Model, ModelVersion
from aiaas.trainings.models import Training
from aiaas.usage import counting
from tests.factories import (
    MLP_CONFIG,
    Account,
    add_model,
    add_prediction,
    add_version,
    post_version,
    publish,
    register,
    seeded_module,
    unique,
    upload_dataset,
    wait_until,
)
from tests.helpers import assert_problem, bearer

TABLES: tuple[type[Any], ...] = (Model, ModelVersion, Dataset, Prediction, Training)
CSV = b"a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n"
ROW = [5.1, 3.5, 1.4, 0.2]
# One row of this model is 80,000 bytes as float32: over the 64 KiB kept in the job row, so
# an async job's inputs go to the artifact store.
WIDE_INPUTS = 20_000
WIDE = {"input_dim": WIDE_INPUTS, "hidden": [2], "output_dim": 2}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The reconciler would hand out the jobs these tests keep queued.
    return settings.model_copy(update={"reconcile_interval_s": 3600.0})


@pytest.fixture
def dispatched(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids handed to the dispatcher (which then runs nothing: jobs stay queued)."""
    sent: list[str] = []
    monkeypatch.setattr(app.state.dispatcher, "submit", lambda task, job_id: sent.append(job_id))
    return sent


def set_quotas(db: Database, account: Account, **limits: int | None) -> None:
    with db.session() as session:
        user = session.get(User, uuid.UUID(account.id))
        assert user is not None
        user.limits = {**(user.limits or {}), "quotas": limits}
        session.commit()


def snapshot(db: Database, settings: Settings) -> dict[str, Any]:
    """Every row a create could add, and every file in the artifact store."""
    with db.session() as session:
        rows = {
            t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in TABLES
        }
    root = Path(settings.resolved_artifacts_url)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return {"rows": rows, "files": files}


def assert_refused(response: Response, quota: str, *, limit: int, current: int) -> str:
    body = assert_problem(response, 403)
    assert body["type"].endswith("/quota-exceeded"), body
    assert (body["quota"], body["limit"], body["current"]) == (quota, limit, current), body
    detail: str = body["detail"]
    return detail


def new_model(client: TestClient, account: Account, name: str, **fields: Any) -> Response:
    """The create under test: its answer is the test's to check (the factory asserts 201)."""
    body = {"name": name, "task": "classification", **fields}
    return client.post("/v1/models", json=body, headers=account.headers)


def upload(client: TestClient, account: Account, name: str, *, seed: int) -> Response:
    """A version of fresh weights (another seed, other bytes: another blob), answer unchecked."""
    weights = save_safetensors(seeded_module(seed=seed))
    spec = {"architecture": "mlp", "config": MLP_CONFIG}
    return post_version(client, name, spec=spec, weights=weights, headers=account.headers)


def train(client: TestClient, account: Account, model: str) -> Response:
    body = {
        "model": model,
        "dataset": "builtin:iris",
        "architecture": "mlp",
        "hyperparameters": {"epochs": 1},
    }
    return client.post("/v1/trainings", json=body, headers=account.headers)


def usage(client: TestClient, account: Account) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/quotas", headers=account.headers)
    assert response.status_code == 200, response.text
    return {item["quota"]: item for item in response.json()["data"]}


def test_models_quota(
    client: TestClient, db: Database, settings: Settings, account: Account, make_account: Any
) -> None:
    set_quotas(db, account, models=2)
    for name in ("q-model-1", "q-model-2"):
        assert new_model(client, account, name).status_code == 201
    before = snapshot(db, settings)

    detail = assert_refused(new_model(client, account, "q-model-3"), "models", limit=2, current=2)
    assert detail == "You have 2 models, the limit of your account; delete one or ask for more."
    # A training into a model it would make counts as a new model too.
    assert_refused(train(client, account, "q-model-4"), "models", limit=2, current=2)

    assert snapshot(db, settings) == before
    assert client.get("/v1/models/q-model-3", headers=account.headers).status_code == 404
    assert usage(client, account)["models"] == {
        "quota": "models",
        "limit": 2,
        "current": 2,
        "unit": "models",
        "model": None,
    }
    other = make_account()
    assert new_model(client, other, "q-model-3").status_code == 201
    assert client.delete("/v1/models/q-model-1", headers=account.headers).status_code == 204
    assert new_model(client, account, "q-model-5").status_code == 201


def test_versions_per_model_quota(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    make_account: Any,
    dispatched: list[str],
) -> None:
    set_quotas(db, account, versions_per_model=1)
    assert new_model(client, account, "q-versions").status_code == 201
    assert upload(client, account, "q-versions", seed=1).status_code == 201
    before = snapshot(db, settings)

    detail = assert_refused(
        upload(client, account, "q-versions", seed=2), "versions_per_model", limit=1, current=1
    )
    assert "'q-versions' has 1 versions" in detail
    # A training into the model would add a version when it succeeds.
    assert_refused(train(client, account, "q-versions"), "versions_per_model", limit=1, current=1)

    assert snapshot(db, settings) == before
    assert dispatched == []
    # The quota is per model: another model of the account takes its first version.
    assert new_model(client, account, "q-versions-2").status_code == 201
    assert upload(client, account, "q-versions-2", seed=2).status_code == 201
    other = make_account()
    assert new_model(client, other, "q-versions-other").status_code == 201
    for seed in (1, 2):
        assert upload(client, other, "q-versions-other", seed=seed).status_code == 201
    shown = usage(client, account)["versions_per_model"]
    assert (shown["limit"], shown["current"], shown["unit"]) == (1, 1, "versions")


def test_stored_bytes_quota_on_weights(
    client: TestClient, db: Database, settings: Settings, account: Account, make_account: Any
) -> None:
    assert new_model(client, account, "q-bytes").status_code == 201
    first = upload(client, account, "q-bytes", seed=1)
    assert first.status_code == 201
    size = first.json()["size_bytes"]
    set_quotas(db, account, stored_bytes=size + 10)
    before = snapshot(db, settings)

    detail = assert_refused(
        upload(client, account, "q-bytes", seed=2), "stored_bytes", limit=size + 10, current=size
    )
    assert f"You store {size} bytes" in detail

    assert snapshot(db, settings) == before
    set_quotas(db, account, stored_bytes=2 * size)
    assert upload(client, account, "q-bytes", seed=2).status_code == 201
    assert usage(client, account)["stored_bytes"]["current"] == 2 * size
    other = make_account()
    assert new_model(client, other, "q-bytes-other").status_code == 201
    assert upload(client, other, "q-bytes-other", seed=3).status_code == 201


def upload_pets(client: TestClient, account: Account, data: bytes) -> Response:
    return upload_dataset(
        client, account, data, filename="pets.csv", content_type="text/csv", name="pets"
    )


def test_stored_bytes_quota_on_datasets(
    client: TestClient, db: Database, settings: Settings, account: Account, make_account: Any
) -> None:
    set_quotas(db, account, stored_bytes=len(CSV) - 1)
    before = snapshot(db, settings)

    assert_refused(upload_pets(client, account, CSV), "stored_bytes", limit=len(CSV) - 1, current=0)

    assert snapshot(db, settings) == before
    assert upload_pets(client, make_account(), CSV).status_code == 201
    set_quotas(db, account, stored_bytes=len(CSV))
    assert upload_pets(client, account, CSV).status_code == 201
    with db.session() as session:
        stored = session.scalar(
            select(Dataset.size_bytes).where(Dataset.owner_id == uuid.UUID(account.id))
        )
    assert usage(client, account)["stored_bytes"]["current"] == stored


def job(
    client: TestClient, account: Account, model: str, inputs: Any, key: str | None = None
) -> Response:
    headers = {**account.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/predictions", json={"model": model, "inputs": inputs}, headers=headers)


def test_async_jobs_quota(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    make_account: Any,
    dispatched: list[str],
) -> None:
    publish(client, account, name="q-jobs", visibility="public")
    set_quotas(db, account, async_jobs=2)
    first = job(client, account, "q-jobs", [ROW], key="first")
    second = job(client, account, "q-jobs", [ROW])
    assert (first.status_code, second.status_code) == (202, 202)
    before = snapshot(db, settings)

    detail = assert_refused(job(client, account, "q-jobs", [ROW]), "async_jobs", limit=2, current=2)
    assert "2 prediction jobs queued or running" in detail

    assert snapshot(db, settings) == before
    assert dispatched == [first.json()["id"], second.json()["id"]]
    # A retry of a job already made gets it back: it adds nothing.
    replay = job(client, account, "q-jobs", [ROW], key="first")
    assert (replay.status_code, replay.json()["id"]) == (202, first.json()["id"])
    other = make_account()
    assert job(client, other, "q-jobs", [ROW]).status_code == 202
    # A finished (here: canceled) job frees its place.
    cancel = client.post(f"/v1/predictions/{first.json()['id']}/cancel", headers=account.headers)
    assert cancel.status_code == 202
    assert job(client, account, "q-jobs", [ROW]).status_code == 202
    shown = usage(client, account)["async_jobs"]
    assert (shown["limit"], shown["current"]) == (2, 2)


def test_stored_bytes_quota_on_large_job_inputs(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    dispatched: list[str],
) -> None:
    publish(client, account, name="q-wide", config=WIDE)
    weights = usage(client, account)["stored_bytes"]["current"]
    inputs = [[0.5] * WIDE_INPUTS]
    payload = 128 + 4 * WIDE_INPUTS  # the .npy header and float32 numbers
    set_quotas(db, account, stored_bytes=weights + payload - 1)
    before = snapshot(db, settings)

    assert_refused(
        job(client, account, "q-wide", inputs),
        "stored_bytes",
        limit=weights + payload - 1,
        current=weights,
    )

    assert snapshot(db, settings) == before
    assert dispatched == []
    set_quotas(db, account, stored_bytes=weights + payload)
    accepted = job(client, account, "q-wide", inputs)
    assert accepted.status_code == 202, accepted.text
    # What the quota counts for the job is exactly the blob its inputs became.
    with db.session() as session:
        digest = session.scalar(
            select(Prediction.inputs_sha256).where(
                Prediction.id == uuid.UUID(accepted.json()["id"])
            )
        )
    assert digest is not None
    blob = next(Path(settings.resolved_artifacts_url).rglob(f"{digest}*"))
    assert blob.stat().st_size == payload
    assert usage(client, account)["stored_bytes"]["current"] == weights + payload


def test_trainings_quota(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    make_account: Any,
    dispatched: list[str],
) -> None:
    set_quotas(db, account, trainings=1)
    first = train(client, account, "q-train-1")
    assert first.status_code == 202, first.text
    before = snapshot(db, settings)

    detail = assert_refused(train(client, account, "q-train-2"), "trainings", limit=1, current=1)
    assert "1 trainings queued or running" in detail

    assert snapshot(db, settings) == before  # neither the training nor its model
    assert dispatched == [first.json()["id"]]
    assert train(client, make_account(), "q-train-other").status_code == 202
    cancel = client.post(f"/v1/trainings/{first.json()['id']}/cancel", headers=account.headers)
    assert cancel.status_code == 202
    assert train(client, account, "q-train-2").status_code == 202


def add_training(
    db: Database, account: Account, started: Any, finished: Any, status: str = "succeeded"
) -> None:
    owner = uuid.UUID(account.id)
    with db.session() as session:
        model = session.scalar(select(Model).where(Model.owner_id == owner))
        if model is None:
            model = add_model(session, owner, name=unique("q-time"), task="regression")
        session.add(
            Training(
                owner_id=owner,
                model_id=model.id,
                model_name=model.name,
                datasets=["builtin:diabetes"],
                architecture="mlp",
                config={},
                hyperparameters={},
                status=status,
                epochs=1,
                started_at=started,
                finished_at=finished,
            )
        )
        session.commit()


def test_training_seconds_per_month_quota(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    make_account: Any,
    dispatched: list[str],
) -> None:
    start = counting.month_start(utcnow())
    add_training(db, account, start + timedelta(seconds=10), start + timedelta(seconds=130))
    set_quotas(db, account, training_seconds_per_month=120)
    before = snapshot(db, settings)

    detail = assert_refused(
        train(client, account, "q-time"), "training_seconds_per_month", limit=120, current=120
    )
    assert "ran 120 s this month" in detail

    assert snapshot(db, settings) == before
    assert dispatched == []
    assert train(client, make_account(), "q-time-other").status_code == 202
    set_quotas(db, account, training_seconds_per_month=121)
    assert train(client, account, "q-time").status_code == 202


def test_training_seconds_count_this_calendar_month_only(
    db: Database, account: Account, make_account: Any
) -> None:
    now = utcnow().replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    start = counting.month_start(now)
    hour = timedelta(hours=1)
    add_training(db, account, start - 10 * hour, start - 9 * hour)  # last month
    add_training(db, account, start - hour, start + hour / 2)  # across the boundary: 1800 s
    add_training(db, account, now - hour, now, status="failed")  # 3600 s
    add_training(db, account, now - hour / 4, None, status="running")  # 900 s so far
    add_training(db, account, None, None, status="queued")  # not started: nothing
    add_training(db, make_account(), now - hour, now)  # another account's

    with db.session() as session:
        seconds = counting.training_seconds(session, uuid.UUID(account.id), now=now)

    assert seconds == 1800 + 3600 + 900


def test_quotas_route_shows_limits_and_use(
    client: TestClient,
    db: Database,
    settings: Settings,
    account: Account,
    make_key: Any,
) -> None:
    fresh = usage(client, account)
    assert list(fresh) == [q.value for q in Quota]
    for name, item in fresh.items():
        assert (item["limit"], item["current"]) == (getattr(settings, f"quota_{name}"), 0)

    assert new_model(client, account, "q-shown").status_code == 201
    size = upload(client, account, "q-shown", seed=1).json()["size_bytes"]
    set_quotas(db, account, models=7, stored_bytes=None)
    shown = usage(client, account)

    assert (shown["models"]["limit"], shown["models"]["current"]) == (7, 1)
    assert shown["versions_per_model"] == {
        "quota": "versions_per_model",
        "limit": settings.quota_versions_per_model,
        "current": 1,
        "unit": "versions",
        "model": "q-shown",
    }
    assert (shown["stored_bytes"]["limit"], shown["stored_bytes"]["current"]) == (None, size)
    # Any credential of the account reads them, a key without scopes included; nobody else.
    key = make_key([])["key"]
    assert client.get("/v1/quotas", headers=bearer(key)).json() == {"data": list(shown.values())}
    assert_problem(client.get("/v1/quotas"), 401)


def test_defaults_come_from_settings_and_overrides_per_account(
    settings: Settings, db: Database
) -> None:
    tight = settings.model_copy(update={"quota_models": 1})
    with TestClient(create_app(tight, database=db)) as client:
        plain, unlimited, raised = register(client), register(client), register(client)
        set_quotas(db, unlimited, models=None)
        set_quotas(db, raised, models=3)

        assert new_model(client, plain, "q-plain-1").status_code == 201
        assert_refused(new_model(client, plain, "q-plain-2"), "models", limit=1, current=1)
        for i in range(3):
            assert new_model(client, raised, f"q-raised-{i}").status_code == 201
            assert new_model(client, unlimited, f"q-unlimited-{i}").status_code == 201
        assert_refused(new_model(client, raised, "q-raised-3"), "models", limit=3, current=3)
        assert usage(client, unlimited)["models"]["limit"] is None


@pytest.fixture
def live(settings: Settings, committed_url: str, tmp_path: Path) -> Iterator[TestClient]:
    update = {"database_url": committed_url, "artifacts_url": str(tmp_path / "live")}
    with TestClient(create_app(settings.model_copy(update=update))) as client:
        yield client


def test_concurrent_creates_of_one_account_cannot_both_pass(
    live: TestClient, committed_url: str, settings: Settings
) -> None:
    """The check locks the account's row until the creating transaction ends, so a create
    that runs meanwhile counts its row. (SQLite serializes every write transaction anyway.)"""
    if not committed_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite serializes write transactions")
    account = register(live)
    database = Database.from_url(committed_url)
    try:
        with database.session() as holder:
            user = holder.get(User, uuid.UUID(account.id))
            assert user is not None
            user.limits = {"quotas": {"models": 1}}
            holder.commit()
            Quotas(settings, counting.RowCounter()).check(holder, user, Quota.MODELS)
            answers: list[Response] = []
            racer = threading.Thread(
                target=lambda: answers.append(new_model(live, account, "q-race-2"))
            )
            racer.start()
            _wait_for_a_lock_wait(database)
            holder.add(Model(owner_id=user.id, name="q-race-1", task="classification"))
            holder.commit()
            racer.join(timeout=30)

        assert_refused(answers[0], "models", limit=1, current=1)
    finally:
        database.dispose()


def _wait_for_a_lock_wait(database: Database) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )

    def waiting() -> int:
        with database.engine.connect() as connection:
            return int(connection.scalar(query) or 0)

    wait_until(
        waiting, timeout=10, interval=0.02, what="the concurrent create to wait for the lock"
    )


def test_an_override_that_is_not_a_whole_number_takes_the_default(settings: Settings) -> None:
    overrides = {"models": -1, "versions_per_model": "5", "async_jobs": True, "trainings": 2.5}
    user = User(
        limits={"quotas": {**overrides, "stored_bytes": None, "training_seconds_per_month": 0}}
    )

    limits = limits_for(user, settings)

    assert limits == {
        "models": settings.quota_models,
        "versions_per_model": settings.quota_versions_per_model,
        "stored_bytes": None,
        "async_jobs": settings.quota_async_jobs,
        "trainings": settings.quota_trainings,
        "training_seconds_per_month": 0,
    }


def test_stored_inputs_of_a_variable_shape_count_at_least_what_sent_them_to_the_store(
    db: Database, account: Account
) -> None:
    owner = uuid.UUID(account.id)
    with db.session() as session:
        model = add_model(session, owner, name="q-variable", task="regression")
        add_version(
            session, model, architecture="rnn", config={}, input_shape=[None, 3], size_bytes=1000
        )
        for number in (1, 2):  # version 2 is gone: its shape is unknown too
            add_prediction(session, model, version=number, rows=4, inputs_sha256="1" * 64)
        session.commit()

        stored = counting.stored_bytes(session, owner)

    assert (stored.weights, stored.datasets) == (1000, 0)
    assert stored.jobs == 2 * (128 + 64 * 1024 + 1)
