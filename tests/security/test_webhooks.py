"""Webhooks: pinned to the checked address, bounded in time and threads, never lost.

No test here connects anywhere but loopback: where a stub resolver names a public address, the
connector is a stub too, which records the address and refuses.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.predictions import deliveries, webhooks
from tests.factories import Account, publish, register, unique, wait_job, wait_until

PUBLIC = "93.184.216.34"
ROW = [5.1, 3.5, 1.4, 0.2]


class Listener:
    """A loopback listener that records what reaches it and answers as told."""

    def __init__(self, answer: bytes = b"HTTP/1.1 204 No Content\r\n\r\n", trickle_s: float = 0):
        self.requests: list[bytes] = []
        self.answer = answer
        self.trickle_s = trickle_s
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        # close() waits for the accept loop to look at its stop flag: look often.
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                # Read the body too: closing with unread bytes sends a reset, which the
                # sender may see before the answer and count as a failed attempt.
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.requests.append(data)
                try:
                    for byte in self.answer:
                        if self.trickle_s and self.stop.wait(self.trickle_s):
                            break
                        conn.sendall(bytes([byte]))
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def test_a_rebinding_resolver_cannot_steer_the_post_to_loopback(listener: Listener) -> None:
    """The resolver answers a public address first and 127.0.0.1 second: the delivery uses
    the first, checked answer only, so nothing ever reaches the loopback listener."""
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    asked: list[str] = []
    connected_to: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connected_to.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError("the test never leaves loopback")
        return socket.create_connection(address, timeout)

    url = f"http://hooks.example.com:{listener.port}/hook"
    attempt = webhooks.deliver(
        url, b"{}", secret="whsec_x", allow_private=False, resolver=resolver, connect=connect
    )
    assert not attempt.delivered
    assert asked == ["hooks.example.com"]  # resolved once
    assert connected_to == [(PUBLIC, listener.port)]
    # Proving that nothing arrives takes giving it the time to: a stray connection to the
    # listener would have been accepted well within this.
    time.sleep(0.3)
    assert listener.requests == []


def test_a_private_answer_is_refused_before_any_connection(listener: Listener) -> None:
    connected: list[object] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connected.append(address)
        raise AssertionError("no connection may be tried")

    attempt = webhooks.deliver(
        f"http://hooks.example.com:{listener.port}/hook",
        b"{}",
        secret="whsec_x",
        allow_private=False,
        resolver=lambda host, port: ["127.0.0.1"],
        connect=connect,
    )
    assert not attempt.delivered
    assert "loopback" in (attempt.error or "")
    assert connected == []
    assert listener.requests == []


def test_the_pinned_connection_keeps_the_host_header(listener: Listener) -> None:
    attempt = webhooks.deliver(
        f"http://hooks.example.test:{listener.port}/in/hook?x=1",
        b'{"id": 1}',
        secret="whsec_x",
        allow_private=True,
        resolver=lambda host, port: ["127.0.0.1"],
    )
    assert attempt.delivered
    assert attempt.status == 204
    head = listener.requests[0].decode("latin-1")
    assert head.startswith("POST /in/hook?x=1 HTTP/1.1\r\n")
    assert f"Host: hooks.example.test:{listener.port}\r\n" in head
    assert f"{webhooks.SIGNATURE_HEADER}: t=" in head


def test_a_trickling_receiver_is_cut_off_at_the_deadline() -> None:
    slow = Listener(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", trickle_s=0.5)
    try:
        start = time.monotonic()
        attempt = webhooks.deliver(
            f"http://127.0.0.1:{slow.port}/hook",
            b"{}",
            secret="whsec_x",
            allow_private=True,
            deadline_s=1.0,
        )
        elapsed = time.monotonic() - start
    finally:
        slow.close()
    assert not attempt.delivered
    assert "within 1 s" in (attempt.error or "")
    assert elapsed < 2.0


# ---- deliveries as rows -----------------------------------------------------------------


def live_settings(settings: Settings, url: str, **extra: Any) -> Settings:
    return settings.model_copy(
        update={
            "database_url": url,
            "webhook_allow_private": True,
            "reconcile_interval_s": 3600.0,
            **extra,
        }
    )


def job_state(client: TestClient, owner: Account, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/predictions/{job_id}", headers=owner.headers).json()
    return found


def test_a_restart_between_a_jobs_end_and_its_delivery_loses_nothing(
    settings: Settings,
    committed_url: str,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = live_settings(settings, committed_url)
    # The first run of the gateway finishes the job and stops before sending anything.
    with monkeypatch.context() as patched:
        patched.setattr(deliveries.WebhookSender, "start", lambda self: self)
        with TestClient(create_app(live)) as first:
            owner = register(first)
            name = publish(first, owner, name=unique("wh")).name
            job = first.post(
                "/v1/predictions",
                json={
                    "model": name,
                    "inputs": [ROW],
                    "webhook": f"http://127.0.0.1:{listener.port}/h",
                },
                headers=owner.headers,
            ).json()
            assert wait_job(first, job["id"], owner.headers)["status"] == "succeeded"
            # Nothing may be sent by this run: give a delivery the time to show if one were.
            time.sleep(0.3)
            assert listener.requests == []
    # The next run sends what is due.
    with TestClient(create_app(live)) as second:
        wait_until(lambda: listener.requests, timeout=10, what="the due webhook to be sent")
        wait_until(
            lambda: job_state(second, owner, job["id"])["webhook"]["delivered_at"],
            timeout=10,
            what="the delivery to be recorded",
        )
    assert listener.requests[0].startswith(b"POST /h HTTP/1.1")
    assert len(listener.requests) == 1


def test_many_failing_webhooks_use_a_bounded_number_of_threads(
    settings: Settings, committed_url: str, tmp_path: Path
) -> None:
    refused = socket.create_server(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens there: every attempt fails at once
    # 120 jobs may all be queued at once on a slow machine: over the default quota of 100
    # active jobs, which this test is not about.
    live = live_settings(settings, committed_url, webhook_workers=3, quota_async_jobs=1000)
    before = threading.active_count()
    peak = before
    with TestClient(create_app(live)) as client:
        owner = register(client)
        name = publish(client, owner, name=unique("wh")).name
        ids = []
        for _ in range(120):
            created = client.post(
                "/v1/predictions",
                json={"model": name, "inputs": [ROW], "webhook": f"http://127.0.0.1:{port}/h"},
                headers=owner.headers,
            )
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
            peak = max(peak, threading.active_count())

        def attempted() -> bool:
            nonlocal peak
            peak = max(peak, threading.active_count())
            attempts = [job_state(client, owner, i)["webhook"]["attempts"] for i in ids[-5:]]
            return all(a >= 1 for a in attempts)

        wait_until(attempted, timeout=30, what="the last jobs' first delivery attempts")
        final = job_state(client, owner, ids[0])["webhook"]
        assert final["delivered_at"] is None
        assert final["attempts"] >= 1
    # The app's own threads (jobs, trainings, torch, batching, the poller, 3 senders, the
    # test client's loop) and nothing per pending delivery.
    assert peak - before <= 15, (before, peak)
