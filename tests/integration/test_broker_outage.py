"""A broker restart under load: 503 problems while Redis is down, recovery without help after.

The test runs a Redis server of its own on a free loopback port, so stopping it disturbs
nothing else.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.migrate import upgrade
from tests.conftest import scratch_database
from tests.factories import publish, register, wait_until
from tests.helpers import free_port, service_reachable
from tests.integration.conftest import Deployment, deployment_settings, worker_env

SECRET = "outage-secret-outage-secret-outage-secret"
ROW = [[5.1, 3.5, 1.4, 0.2]]


class RedisServer:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: service_reachable("127.0.0.1", self.port),
            timeout=10,
            what="redis-server to accept connections",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture
def outage_setup(
    redis_url: str, test_database_url: str | None, tmp_path: Path
) -> Iterator[tuple[Settings, RedisServer, subprocess.Popen[bytes], Path]]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    broker = f"redis://127.0.0.1:{server.port}/0"
    scratch = scratch_database(test_database_url, tmp_path)
    upgrade(scratch.url)
    settings = deployment_settings(
        tmp_path,
        database_url=scratch.url,
        broker_url=broker,
        broker_timeout_s=1.0,
        predict_timeout_s=5.0,
    )
    deployment = Deployment(settings, worker_env(settings))
    worker = deployment.start_worker(tmp_path)
    deployment.wait_ready(worker)
    log = deployment.logs[0]
    yield settings, server, worker, log
    deployment.stop_all()
    server.stop()
    scratch.drop()


def test_gateway_answers_503_while_redis_is_down_and_recovers(
    outage_setup: tuple[Settings, RedisServer, subprocess.Popen[bytes], Path],
) -> None:
    settings, server, worker, log = outage_setup
    with TestClient(create_app(settings)) as gateway:
        owner = register(gateway)
        publish(gateway, owner, name="outage")
        url = "/v1/models/outage/predict"
        assert gateway.post(url, json={"inputs": ROW}, headers=owner.headers).status_code == 200

        statuses: Counter[int] = Counter()
        slowest = 0.0
        stop = threading.Event()

        def load() -> None:
            nonlocal slowest
            while not stop.is_set():
                start = time.monotonic()
                response = gateway.post(url, json={"inputs": ROW}, headers=owner.headers)
                slowest = max(slowest, time.monotonic() - start)
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    assert response.headers["content-type"].startswith("application/problem+json")
                # Paced, not flat out: a steady trickle meets every phase of the outage
                # without the load itself slowing the gateway down.
                time.sleep(0.02)

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: statuses[200], timeout=30, what="the load to be answered")
        server.stop()
        # The outage has to last (three broker timeouts) for the load to show that requests
        # fail promptly: one stuck on the dead broker would otherwise be rescued by the restart.
        time.sleep(3.0)
        down = gateway.post(url, json={"inputs": ROW}, headers=owner.headers)
        assert down.status_code == 503, down.text
        assert down.json()["status"] == 503
        ready = gateway.get("/readyz")
        assert ready.status_code == 503
        assert "broker" in ready.json()["detail"]

        server.start()
        wait_until(
            lambda: (
                gateway.post(url, json={"inputs": ROW}, headers=owner.headers).status_code == 200
            ),
            timeout=60,
            interval=0.2,
            what=lambda: f"recovery; the worker's log ends:\n{log.read_text()[-2000:]}",
        )
        answered = statuses[200]
        wait_until(lambda: statuses[200] > answered, timeout=30, what="the load to recover")
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert gateway.get("/readyz").status_code == 200

    assert worker.poll() is None, "the worker must ride out the outage"
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert statuses[503] > 0
    # Nobody waited for the full predict timeout: outages are answered promptly.
    assert slowest < settings.predict_timeout_s + 1
