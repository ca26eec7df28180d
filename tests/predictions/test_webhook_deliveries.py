"""Deliveries as rows: claims that two senders cannot share, the retry schedule, claims that
expire, and a job failed in its task when its outputs would pass a lowered bound.

The senders here are given a stub in place of the network call: what is under test is which
attempt is sent, when and by whom, not the HTTP exchange (tests/security/test_webhooks.py).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from aiaas.config import Settings
from aiaas.context import build_context
from aiaas.db import Database, utcnow
from aiaas.main import create_app
from aiaas.metrics import Metrics
from aiaas.predictions import deliveries, tasks, webhooks
from aiaas.predictions.models import QUEUED, Prediction
from aiaas.storage import ArtifactStore, open_store
from tests.factories import Account, publish, register, unique, wait_job, wait_until

ROW = [5.1, 3.5, 1.4, 0.2]
# Never connected to: every sender in this module has a stub in place of the network call.
HOOK = "http://127.0.0.1:9/h"


@pytest.fixture(scope="module")
def live(committed_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        env="test",
        var_dir=tmp_path_factory.mktemp("var"),
        database_url=committed_url,
        secret_key=SecretStr("test-secret-key-test-secret-key-0123456789"),
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        demo_models=False,
        webhook_allow_private=True,
        reconcile_interval_s=3600.0,
    )


@pytest.fixture(scope="module")
def finished_jobs(live: Settings) -> Iterator[tuple[TestClient, Account, str, list[str]]]:
    """A gateway whose own sender never starts, an owner, a model and eight finished jobs
    whose webhooks are due."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(deliveries.WebhookSender, "start", lambda self: self)
        with TestClient(create_app(live)) as client:
            owner = register(client)
            name = publish(client, owner, name=unique("rows")).name
            ids = []
            for _ in range(8):
                job = client.post(
                    "/v1/predictions",
                    json={"model": name, "inputs": [ROW], "webhook": HOOK},
                    **_h(owner),
                )
                assert job.status_code == 202, job.text
                ids.append(job.json()["id"])
            for job_id in ids:
                assert wait_job(client, job_id, owner.headers)["status"] == "succeeded"
            yield client, owner, name, ids


@pytest.fixture
def database(live: Settings) -> Iterator[Database]:
    database = Database.from_url(live.resolved_database_url)
    yield database
    database.dispose()


@pytest.fixture
def store(live: Settings) -> ArtifactStore:
    return open_store(live.resolved_artifacts_url)


def reset(database: Database, ids: list[str], **values: Any) -> None:
    """Make the jobs' webhooks due now, never attempted, unless ``values`` say otherwise."""
    with database.session() as session:
        session.execute(
            update(Prediction)
            .where(Prediction.id.in_([uuid.UUID(i) for i in ids]))
            .values(
                **{
                    "webhook_due_at": utcnow() - timedelta(seconds=1),
                    "webhook_claimed_until": None,
                    "webhook_attempts": 0,
                    "webhook_last_status": None,
                    "webhook_delivered_at": None,
                    **values,
                }
            )
        )
        session.commit()


def row(database: Database, job_id: str) -> Prediction:
    with database.session() as session:
        found = session.get(Prediction, uuid.UUID(job_id))
        assert found is not None
        return found


def test_two_senders_never_send_the_same_attempt(
    finished_jobs: tuple[TestClient, Account, str, list[str]],
    database: Database,
    store: ArtifactStore,
) -> None:
    _, _, _, ids = finished_jobs
    reset(database, ids)
    sent: Counter[str] = Counter()
    lock = threading.Lock()
    release = threading.Event()

    def deliver(url: str, body: bytes, **_: Any) -> webhooks.Attempt:
        with lock:
            sent[orjson.loads(body)["id"]] += 1
        release.wait(10)
        return webhooks.Attempt(True, 204, None)

    senders = [
        deliveries.WebhookSender(database, store, allow_private=True, workers=8, deliver=deliver)
        for _ in range(2)
    ]
    try:
        # Both sweep at once, then again while every attempt they took is still in flight.
        barrier = threading.Barrier(2)
        started = [0, 0]

        def sweep(i: int) -> None:
            barrier.wait()
            started[i] = senders[i].sweep()

        threads = [threading.Thread(target=sweep, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(started) == len(ids), started
        assert sum(s.sweep() for s in senders) == 0
        release.set()
        wait_until(
            lambda: all(row(database, i).webhook_delivered_at is not None for i in ids),
            timeout=10,
            what="every delivery to be recorded",
        )
        assert sum(s.sweep() for s in senders) == 0  # delivered: never sent again
    finally:
        release.set()
        for sender in senders:
            sender.close()
    assert sent == Counter(dict.fromkeys(ids, 1))


def test_failed_attempts_follow_the_retry_schedule_then_stop(
    finished_jobs: tuple[TestClient, Account, str, list[str]],
    database: Database,
    store: ArtifactStore,
) -> None:
    client, owner, _, ids = finished_jobs
    job_id = ids[0]
    reset(database, [job_id])

    def deliver(url: str, body: bytes, **_: Any) -> webhooks.Attempt:
        return webhooks.Attempt(False, 503, "answered 503")

    sender = deliveries.WebhookSender(database, store, allow_private=True, deliver=deliver)
    try:
        for attempt, delay in enumerate((*webhooks.RETRY_DELAYS_S, None), start=1):
            before = utcnow()
            assert sender.attempt(uuid.UUID(job_id)) is False
            after = row(database, job_id)
            assert after.webhook_attempts == attempt
            assert after.webhook_last_status == 503
            if delay is None:
                assert after.webhook_due_at is None  # six attempts in all, then none
            else:
                assert after.webhook_due_at is not None
                wait = (after.webhook_due_at - before).total_seconds()
                assert delay - 0.5 <= wait <= delay + 5, (attempt, wait)
    finally:
        sender.close()
    assert _doc(client, owner, job_id)["webhook"] == {
        "url": HOOK,
        "attempts": 6,
        "last_status": 503,
        "delivered_at": None,
    }


def test_a_claim_left_by_a_dead_sender_expires_and_the_attempt_is_made_again(
    finished_jobs: tuple[TestClient, Account, str, list[str]],
    database: Database,
    store: ArtifactStore,
) -> None:
    _, _, _, ids = finished_jobs
    held, expired = ids[1], ids[2]
    reset(database, ids)
    # Only these two are due; one is held by a live claim, the other's claim ran out.
    others = [i for i in ids if i not in (held, expired)]
    reset(database, others, webhook_due_at=None)
    reset(database, [held], webhook_claimed_until=utcnow() + timedelta(minutes=5))
    reset(database, [expired], webhook_claimed_until=utcnow() - timedelta(seconds=1))
    sent: list[str] = []
    done = threading.Event()

    def deliver(url: str, body: bytes, **_: Any) -> webhooks.Attempt:
        sent.append(orjson.loads(body)["id"])
        done.set()
        return webhooks.Attempt(True, 200, None)

    sender = deliveries.WebhookSender(database, store, allow_private=True, deliver=deliver)
    try:
        assert sender.sweep() == 1
        assert done.wait(10)
        wait_until(
            lambda: row(database, expired).webhook_delivered_at is not None,
            timeout=10,
            what="the retried delivery to be recorded",
        )
    finally:
        sender.close()
    assert sent == [expired]
    assert row(database, held).webhook_delivered_at is None


def test_a_job_over_a_lowered_output_bound_fails_in_its_task_before_it_runs(
    finished_jobs: tuple[TestClient, Account, str, list[str]],
    live: Settings,
    database: Database,
    store: ArtifactStore,
) -> None:
    client, owner, _, ids = finished_jobs
    job_id = ids[3]
    # Queued again, as if created before the limit was lowered to below its 12 bytes.
    with database.session() as session:
        session.execute(
            update(Prediction)
            .where(Prediction.id == uuid.UUID(job_id))
            .values(status=QUEUED, outputs=None, predictions=None, finished_at=None)
        )
        session.commit()
    lowered = live.model_copy(update={"max_output_mb": 1e-6})
    ctx = build_context(
        lowered,
        metrics=Metrics(),
        schedule_webhook=lambda job, delay: None,
        database=database,
        store=store,
    )
    forwards: list[object] = []
    original = ctx.runtime

    def runtime(spec: Any) -> Any:
        forwards.append(spec)
        return original(spec)

    ctx.runtime = runtime  # type: ignore[method-assign]
    assert tasks.run_prediction_job(ctx, job_id) == "failed"
    assert forwards == []  # refused before any model was loaded or run
    failed = _doc(client, owner, job_id)
    assert failed["status"] == "failed"
    assert "outputs would be too large" in failed["error"]
    assert "over the limit of" in failed["error"]
    assert failed["outputs"] is None


def _doc(client: TestClient, owner: Account, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/predictions/{job_id}", **_h(owner)).json()
    return found


def _h(account: Account) -> dict[str, Any]:
    return {"headers": account.headers}
