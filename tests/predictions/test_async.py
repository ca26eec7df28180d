"""Async prediction jobs in embedded mode, against a committed database (jobs run on threads
of their own, so they cannot share a test's rolled-back connection)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.predictions import webhooks
from tests.factories import Account, publish, register, unique, wait_job, wait_until
from tests.helpers import assert_problem

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def client(settings: Settings, committed_url: str, tmp_path: Path) -> Iterator[TestClient]:
    # The app's own reconciler stays out of the way of the test that drives one by hand.
    live = settings.model_copy(
        update={
            "database_url": committed_url,
            "webhook_allow_private": True,
            "reconcile_interval_s": 3600.0,
        }
    )
    with TestClient(create_app(live)) as test_client:
        yield test_client


@pytest.fixture
def owner(client: TestClient) -> Account:
    return register(client)


@pytest.fixture
def model_name(client: TestClient, owner: Account) -> str:
    return publish(client, owner, name=unique("iris")).name


def test_job_is_queued_then_succeeds(client: TestClient, owner: Account, model_name: str) -> None:
    response = client.post(
        "/v1/predictions", json={"model": model_name, "inputs": [ROW]}, headers=owner.headers
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert job["version"] == 1
    assert response.headers["location"] == f"/v1/predictions/{job['id']}"
    done = wait_job(client, job["id"], owner.headers)
    assert done["status"] == "succeeded"
    assert len(done["outputs"]) == 1
    assert isinstance(done["predictions"][0], int)
    assert done["timings"]["total_s"] >= done["timings"]["compute_s"] >= 0
    listed = client.get("/v1/predictions", headers=owner.headers).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]


def test_idempotency_key(client: TestClient, owner: Account, model_name: str) -> None:
    headers = {**owner.headers, "Idempotency-Key": "retry-me"}
    body = {"model": model_name, "inputs": [ROW]}
    first = client.post("/v1/predictions", json=body, headers=headers)
    again = client.post(
        "/v1/predictions",
        content=json.dumps({"inputs": [ROW], "model": model_name}, indent=2),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/v1/predictions", json={**body, "inputs": [[0, 0, 0, 0]]}, headers=headers)
    assert_problem(other, 409)
    assert len(client.get("/v1/predictions", headers=owner.headers).json()["data"]) == 1


def test_cancel(client: TestClient, owner: Account, model_name: str) -> None:
    job = client.post(
        "/v1/predictions", json={"model": model_name, "inputs": [ROW]}, headers=owner.headers
    ).json()
    done = wait_job(client, job["id"], owner.headers)
    assert done["status"] == "succeeded"
    assert_problem(client.post(f"/v1/predictions/{job['id']}/cancel", headers=owner.headers), 409)


def test_bad_jobs_are_refused_before_anything_is_queued(
    client: TestClient, owner: Account, model_name: str
) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({"model": model_name, "inputs": [[1, 2, 3]]}, 422),
        ({"model": model_name, "inputs": [[1, True, 3, 4]]}, 422),
        ({"model": model_name}, 422),
        ({"model": "no-such-model", "inputs": [ROW]}, 404),
        ({"model": model_name, "version": 9, "inputs": [ROW]}, 404),
        ({"model": model_name, "inputs": [ROW], "webhook": "ftp://example.com/x"}, 422),
    ]
    for body, status in cases:
        assert_problem(client.post("/v1/predictions", json=body, headers=owner.headers), status)
    assert client.get("/v1/predictions", headers=owner.headers).json()["data"] == []


def test_others_cannot_see_or_cancel_a_job(
    client: TestClient, owner: Account, model_name: str
) -> None:
    job = client.post(
        "/v1/predictions", json={"model": model_name, "inputs": [ROW]}, headers=owner.headers
    ).json()
    stranger = register(client).headers
    assert_problem(client.get(f"/v1/predictions/{job['id']}", headers=stranger), 404)
    assert_problem(client.post(f"/v1/predictions/{job['id']}/cancel", headers=stranger), 404)


class _Receiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, str]] = []
        self.event = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((body, self.headers[webhooks.SIGNATURE_HEADER]))
                self.send_response(204)
                self.end_headers()
                receiver.event.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        # shutdown() waits for the loop's next look at its flag: look often, close quickly.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_webhook_is_signed_with_the_accounts_secret(
    client: TestClient, owner: Account, model_name: str, receiver: _Receiver
) -> None:
    secret = client.get("/v1/me", headers=owner.headers).json()["webhook_secret"]
    job = client.post(
        "/v1/predictions",
        json={"model": model_name, "inputs": [ROW], "webhook": receiver.url},
        headers=owner.headers,
    ).json()
    assert receiver.event.wait(20), "no webhook arrived"
    body, signature = receiver.deliveries[0]
    assert webhooks.verify(secret, body, signature)
    assert not webhooks.verify("whsec_wrong", body, signature)
    delivered = json.loads(body)
    assert delivered["id"] == job["id"]
    assert delivered["status"] == "succeeded"
    wait_job(client, job["id"], owner.headers)

    def recorded() -> dict[str, Any] | None:
        url = f"/v1/predictions/{job['id']}"
        doc: dict[str, Any] = client.get(url, headers=owner.headers).json()
        return doc if doc["webhook"]["delivered_at"] is not None else None

    final = wait_until(recorded, timeout=5, what="the delivery to be recorded")
    assert final["webhook"]["attempts"] == 1
    assert final["webhook"]["last_status"] == 204


def test_private_webhook_targets_are_refused_when_not_allowed(
    settings: Settings, committed_url: str, owner: Account, model_name: str
) -> None:
    strict = settings.model_copy(update={"database_url": committed_url})
    with TestClient(create_app(strict)) as strict_client:
        response = strict_client.post(
            "/v1/predictions",
            json={"model": model_name, "inputs": [ROW], "webhook": "http://127.0.0.1:9/hook"},
            headers=owner.headers,
        )
    body = assert_problem(response, 422)
    assert "loopback" in body["detail"]


ResolverCase = tuple[str, list[str], str | None]
ADDRESS_CASES: list[ResolverCase] = [
    ("http://internal.example/hook", ["10.1.2.3"], "private"),
    ("http://internal.example/hook", ["192.168.0.7"], "private"),
    ("http://internal.example/hook", ["172.16.5.5"], "private"),
    ("http://localhost/hook", ["127.0.0.1"], "loopback"),
    ("http://[::1]/hook", ["::1"], "loopback"),
    ("http://metadata.example/hook", ["169.254.169.254"], "link-local"),
    ("http://v6.example/hook", ["fe80::1"], "link-local"),
    ("http://mapped.example/hook", ["::ffff:10.0.0.1"], "private"),
    ("http://multi.example/hook", ["93.184.216.34", "10.0.0.1"], "private"),
    ("http://zero.example/hook", ["0.0.0.0"], "unspecified"),
    ("http://public.example/hook", ["93.184.216.34"], None),
    ("https://public6.example/hook", ["2606:2800:220:1:248:1893:25c8:1946"], None),
]


@pytest.mark.parametrize(("url", "addresses", "problem"), ADDRESS_CASES)
def test_webhook_address_check(url: str, addresses: list[str], problem: str | None) -> None:
    # The resolver is the external edge: replaced, so no lookup or delivery leaves this machine.
    def resolver(host: str, port: int) -> list[str]:
        return addresses

    if problem is None:
        webhooks.check_url(url, allow_private=False, resolver=resolver)
        return
    with pytest.raises(webhooks.WebhookRefused, match=problem):
        webhooks.check_url(url, allow_private=False, resolver=resolver)
    webhooks.check_url(url, allow_private=True, resolver=resolver)


def test_unresolvable_hosts_are_refused() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise webhooks.WebhookRefused(f"the host '{host}' does not resolve")

    with pytest.raises(webhooks.WebhookRefused, match="does not resolve"):
        webhooks.check_url("http://nowhere.invalid/hook", allow_private=True, resolver=resolver)


def test_signature_format() -> None:
    header = webhooks.sign("whsec_x", b'{"a":1}', timestamp=1700000000)
    assert header.startswith("t=1700000000,v1=")
    assert len(header.split("v1=")[1]) == 64


Factory = Callable[..., Any]


def test_reconciler_republishes_a_stale_job_once_per_period(
    client: TestClient, owner: Account, model_name: str, committed_url: str
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from aiaas import jobs
    from aiaas.db import Database, utcnow
    from aiaas.predictions import tasks
    from aiaas.predictions.models import Prediction

    def stale(database: Database) -> list[str]:
        handed: list[str] = []
        jobs.reconcile(
            database,
            [tasks.PREDICTION_JOB],
            requeue_after_s=60,
            submit=lambda task, job_id: handed.append(job_id),
        )
        return handed

    job = client.post(
        "/v1/predictions", json={"model": model_name, "inputs": [ROW]}, headers=owner.headers
    ).json()
    wait_job(client, job["id"], owner.headers)
    database = Database.from_url(committed_url)
    try:
        with database.session() as session:
            # As if the broker lost the message an hour ago, and as if a worker died holding it.
            session.execute(
                update(Prediction)
                .where(Prediction.id == uuid.UUID(job["id"]))
                .values(status="queued", dispatched_at=utcnow() - timedelta(hours=1))
            )
            session.commit()
        first = stale(database)
        again = stale(database)
        assert job["id"] in first
        assert job["id"] not in again
        with database.session() as session:
            session.execute(
                update(Prediction)
                .where(Prediction.id == uuid.UUID(job["id"]))
                .values(status="running", lease_expires_at=utcnow() - timedelta(seconds=1))
            )
            session.commit()
        assert job["id"] in stale(database)
        assert job["id"] not in stale(database)
    finally:
        database.dispose()
