"""The distributed mode end to end: gateway → Redis → a real `aiaas worker` process → results."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from aiaas.db import Database
from aiaas.main import create_app
from aiaas.predictions import webhooks
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelVersion
from aiaas.serving import wire
from tests.factories import Account, publish, wait_job, wait_until
from tests.helpers import assert_problem
from tests.integration.conftest import Deployment

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


class Receiver:
    """A local webhook listener that checks every signature."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.deliveries: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = webhooks.verify(
                    receiver.secret, body, self.headers[webhooks.SIGNATURE_HEADER]
                )
                with receiver.lock:
                    if valid:
                        receiver.deliveries.append(json.loads(body))
                    else:
                        receiver.bad_signatures += 1
                self.send_response(204 if valid else 400)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        # shutdown() waits for the loop's next look at its flag: look often, close quickly.
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(gateway: TestClient, owner: Account) -> Iterator[Receiver]:
    secret = gateway.get("/v1/me", headers=owner.headers).json()["webhook_secret"]
    r = Receiver(secret)
    yield r
    r.close()


def test_sync_predict_runs_on_the_worker(
    gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes]
) -> None:
    name, module = publish(gateway, owner)
    response = gateway.post(
        f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    import torch

    with torch.inference_mode():
        expected = module(torch.from_numpy(ROWS)).softmax(-1).numpy()
    np.testing.assert_allclose(np.array(response.json()["outputs"]), expected, rtol=1e-5, atol=1e-6)


def test_concurrent_sync_requests_travel_as_fewer_batches(
    gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes]
) -> None:
    name, module = publish(gateway, owner)
    url = f"/v1/models/{name}/predict"
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 4)).astype(np.float32)
    gateway.post(url, json={"inputs": [rows[0].tolist()]}, headers=owner.headers)  # warm caches
    before = gateway.get("/metrics").text

    def call(i: int) -> list[float]:
        r = gateway.post(url, json={"inputs": [rows[i].tolist()]}, headers=owner.headers)
        assert r.status_code == 200, r.text
        out: list[float] = r.json()["outputs"][0]
        return out

    with ThreadPoolExecutor(40) as pool:
        answers = np.array(list(pool.map(call, range(40))), dtype=np.float32)
    after = gateway.get("/metrics").text

    def count(text: str) -> float:
        match = re.search(r"^aiaas_batch_size_count (\S+)$", text, re.M)
        assert match
        return float(match.group(1))

    batches = count(after) - count(before)
    assert batches < 40, f"{batches} tasks for 40 requests"
    import torch

    with torch.inference_mode():
        expected = module(torch.from_numpy(rows)).softmax(-1).numpy()
    np.testing.assert_allclose(answers, expected, rtol=1e-5, atol=1e-6)


def test_async_job_with_signed_webhook(
    gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes], receiver: Receiver
) -> None:
    name = publish(gateway, owner).name
    job = gateway.post(
        "/v1/predictions",
        json={"model": name, "inputs": ROWS.tolist(), "webhook": receiver.url},
        headers=owner.headers,
    ).json()
    done = wait_job(gateway, job["id"], owner.headers)
    assert done["status"] == "succeeded"
    wait_until(lambda: receiver.deliveries, timeout=20, what="the webhook")
    assert receiver.bad_signatures == 0
    [delivered] = receiver.deliveries
    assert delivered["id"] == job["id"]
    assert delivered["outputs"] == done["outputs"]


def test_idempotency_and_cancel(
    gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes]
) -> None:
    name = publish(gateway, owner).name
    headers = {**owner.headers, "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    body = {"model": name, "inputs": ROWS.tolist()}
    first = gateway.post("/v1/predictions", json=body, headers=headers)
    again = gateway.post("/v1/predictions", json=body, headers=headers)
    assert again.status_code == first.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert_problem(
        gateway.post("/v1/predictions", json={**body, "inputs": [[1, 1, 1, 1]]}, headers=headers),
        409,
    )
    done = wait_job(gateway, first.json()["id"], owner.headers)
    assert done["status"] == "succeeded"
    assert_problem(gateway.post(f"/v1/predictions/{done['id']}/cancel", headers=owner.headers), 409)


# A job run that kept nothing, as a worker logs it: the job was canceled (or taken over)
# before the run could claim it ('skipped') or before it could finish it ('dropped').
RUN_WITHOUT_OUTPUTS = re.compile(
    r"run_prediction_job\[\w+\] succeeded in \S+ '(?:skipped|dropped)'"
)


def runs_without_outputs(deployment: Deployment) -> int:
    return len(RUN_WITHOUT_OUTPUTS.findall("".join(log.read_text() for log in deployment.logs)))


def test_cancel_a_queued_job_drops_its_outputs(
    gateway: TestClient,
    owner: Account,
    deployment: Deployment,
    worker: subprocess.Popen[bytes],
) -> None:
    config = {"cell": "lstm", "input_size": 1, "hidden_size": 128, "num_layers": 2,
              "seq_len": 200, "output_dim": 3}  # fmt: skip
    name = publish(gateway, owner, architecture="rnn", config=config).name
    runs_before = runs_without_outputs(deployment)
    inputs = np.random.default_rng(1).normal(size=(32, 200, 1)).astype(np.float32).tolist()
    ids = [
        gateway.post(
            "/v1/predictions", json={"model": name, "inputs": inputs}, headers=owner.headers
        ).json()["id"]
        for _ in range(3)
    ]
    canceled = gateway.post(f"/v1/predictions/{ids[-1]}/cancel", headers=owner.headers)
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] == "canceled"
    for job_id in ids[:-1]:
        assert wait_job(gateway, job_id, owner.headers)["status"] == "succeeded"
    wait_until(
        lambda: runs_without_outputs(deployment) > runs_before,
        timeout=20,
        what="a worker to take the canceled job's message",
    )
    final = gateway.get(f"/v1/predictions/{ids[-1]}", headers=owner.headers).json()
    assert final["status"] == "canceled"
    assert final["outputs"] is None
    assert_problem(gateway.post(f"/v1/predictions/{ids[-1]}/cancel", headers=owner.headers), 409)


def test_private_webhook_is_refused_by_the_address_check(
    gateway: TestClient, owner: Account
) -> None:
    with pytest.raises(webhooks.WebhookRefused, match="private"):
        webhooks.check_url(
            "http://intranet.example/hook", allow_private=False, resolver=lambda h, p: ["10.0.0.8"]
        )


def test_sigkilled_worker_loses_no_job(
    gateway: TestClient,
    owner: Account,
    deployment: Deployment,
    worker: subprocess.Popen[bytes],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    # A deep LSTM over long sequences takes seconds per job, so the kill lands mid-job.
    config = {"cell": "lstm", "input_size": 1, "hidden_size": 256, "num_layers": 2,
              "seq_len": 200, "output_dim": 3}  # fmt: skip
    name = publish(gateway, owner, architecture="rnn", config=config).name
    inputs = np.random.default_rng(0).normal(size=(192, 200, 1)).astype(np.float32).tolist()
    worker.send_signal(signal.SIGTERM)  # queue the jobs with no worker listening
    worker.wait(timeout=30)
    ids = []
    for _ in range(4):
        job = gateway.post(
            "/v1/predictions",
            json={"model": name, "inputs": inputs, "webhook": receiver.url},
            headers=owner.headers,
        )
        assert job.status_code == 202, job.text
        ids.append(job.json()["id"])

    def states() -> list[str]:
        return [
            gateway.get(f"/v1/predictions/{i}", headers=owner.headers).json()["status"] for i in ids
        ]

    doomed = deployment.start_worker(tmp_path)
    deployment.wait_ready(doomed)
    wait_until(lambda: "running" in states(), timeout=60, interval=0.02, what="a job to start")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    at_kill = states()
    assert "running" in at_kill, at_kill
    assert "queued" in at_kill, at_kill

    replacement = deployment.start_worker(tmp_path)
    deployment.wait_ready(replacement)
    finished = [wait_job(gateway, i, owner.headers, timeout=120) for i in ids]
    assert [j["status"] for j in finished] == ["succeeded"] * len(ids)
    assert all(len(j["outputs"]) == 192 for j in finished)

    wait_until(
        lambda: len(receiver.deliveries) >= len(ids), timeout=30, what="a webhook for each job"
    )
    # A duplicate is a delivery that should not happen: only waiting a while can show its
    # absence, and one would follow the first well within this.
    time.sleep(1)
    delivered = Counter(d["id"] for d in receiver.deliveries)
    assert delivered == Counter(ids), "each job is reported exactly once"
    assert all(d["status"] == "succeeded" for d in receiver.deliveries)


def test_worker_serves_its_own_metrics(
    deployment: Deployment, gateway: TestClient, owner: Account, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = deployment.start_worker(tmp_path, "--metrics-port", str(port))
    deployment.wait_ready(process)
    name = publish(gateway, owner).name
    for _ in range(3):
        r = gateway.post(
            f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=owner.headers
        )
        assert r.status_code == 200
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "aiaas_batch_size_count" in text
    assert 'aiaas_worker_device{device="cpu"} 1.0' in text


def serving_spec_of(deployment: Deployment, name: str) -> dict[str, Any]:
    database = Database.from_url(deployment.settings.resolved_database_url)
    try:
        with database.session() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            assert model is not None
            version = session.scalar(select(ModelVersion).where(ModelVersion.model_id == model.id))
            assert version is not None
            spec = versions.serving_spec(
                model, version, default_max_batch_size=64, default_max_delay_ms=0
            )
    finally:
        database.dispose()
    return spec.to_dict()


def test_worker_answers_listed_batches_and_drops_stale_or_broken_ones(
    deployment: Deployment, gateway: TestClient, owner: Account, worker: subprocess.Popen[bytes]
) -> None:
    """What a worker's batch thread does with each kind of message on the batch list: a
    stale batch is dropped, garbage is dropped, a batch it cannot run gets an error reply, a
    good one its outputs, and it keeps serving."""
    name, module = publish(gateway, owner)
    spec = serving_spec_of(deployment, name)
    missing = {**spec, "weights": "0" * 64}
    alive = [process for process in deployment.workers if process.poll() is None]
    assert alive, "no worker is serving the batch list"
    reply_to = f"{wire.REPLY_PREFIX}test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(deployment.settings.broker_url or "")
    key = wire.batch_key("predict")
    now = time.time()

    def batch(batch_id: str, spec: dict[str, Any], deadline: float) -> bytes:
        return wire.pack_batch(
            spec, ROWS, reply_to=reply_to, batch_id=batch_id, sent=now, deadline=deadline
        )

    replies: dict[str, wire.Reply] = {}
    try:
        client.rpush(
            key,
            batch("stale", spec, now - 1),
            b"not a batch message",
            batch("missing", missing, now + 30),
            batch("live", spec, now + 30),
        )
        # Other workers of this module may take some of the messages: wait for both answers,
        # then a little longer for a reply to the stale batch that must never come.
        while len(replies) < 2:
            item = client.blpop([reply_to], timeout=30)
            assert item is not None, f"replies so far: {replies}"
            reply = wire.read_reply(item[1])
            replies[reply.batch_id] = reply
        late = client.blpop([reply_to], timeout=2)
        assert late is None, wire.read_reply(late[1])
    finally:
        client.delete(reply_to)
        client.close()

    assert sorted(replies) == ["live", "missing"]
    assert replies["missing"].outputs is None
    assert replies["missing"].error
    live = replies["live"].outputs
    assert live is not None
    import torch

    with torch.inference_mode():
        expected = module(torch.from_numpy(ROWS)).softmax(-1).numpy()
    np.testing.assert_allclose(live, expected, rtol=1e-5, atol=1e-6)
    assert all(process.poll() is None for process in alive)
    logs = "".join(log.read_text() for log in deployment.logs)
    assert "past its deadline" in logs
    assert "unreadable batch message" in logs


def test_sync_predict_answers_504_when_no_worker_takes_the_batch(
    deployment: Deployment, gateway: TestClient, owner: Account
) -> None:
    """A gateway whose broker has no worker listening: the batch is published, nobody
    answers, and the caller gets 504 at the predict timeout."""
    name = publish(gateway, owner).name
    broker = (deployment.settings.broker_url or "").rsplit("/", 1)[0] + "/14"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    lonely = deployment.settings.model_copy(update={"broker_url": broker, "predict_timeout_s": 1.5})
    try:
        with TestClient(create_app(lonely)) as alone:
            start = time.monotonic()
            response = alone.post(
                f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=owner.headers
            )
            waited = time.monotonic() - start
        assert_problem(response, 504)
        assert waited >= 1.5
        # The batch really went out: it is still on the list, waiting for a worker.
        assert client.llen(wire.batch_key("predict")) == 1
    finally:
        client.flushdb()
        client.close()
