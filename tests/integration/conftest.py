"""A real distributed deployment for integration tests: a committed database (SQLite file or a
fresh PostgreSQL database), the machine's Redis, a gateway app, and `aiaas worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.migrate import upgrade
from tests.conftest import scratch_database
from tests.factories import Account, register, wait_until

SECRET = "integration-secret-integration-secret-0123"
# A database number of its own: the suite flushes it and nothing else.
TEST_REDIS_DB = 13


def deployment_settings(
    tmp: Path, *, database_url: str, broker_url: str, **overrides: Any
) -> Settings:
    """Settings for a gateway and its workers: a shared artifact directory, cheap password
    hashes, no demo trainings; ``overrides`` for what a test tunes."""
    return Settings(
        env="test",
        var_dir=tmp / "var",
        database_url=database_url,
        artifacts_url=str(tmp / "artifacts"),
        broker_url=broker_url,
        secret_key=SecretStr(SECRET),
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        demo_models=False,
        **overrides,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process the same settings as the test's gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    for name, value in settings.model_dump(exclude_unset=True).items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = str(value).lower()
        env[f"AIAAS_{name.upper()}"] = str(value)
    return env


@dataclass
class Deployment:
    settings: Settings
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start_worker(
        self, tmp: Path, *extra: str, queues: str = "predict"
    ) -> subprocess.Popen[bytes]:
        log = tmp / f"worker-{len(self.workers)}.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "aiaas", "worker", "--queues", queues, *extra],
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        self.workers.append(process)
        self.logs.append(log)
        return process

    def wait_ready(self, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
        log = self.logs[self.workers.index(process)]

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker exited:\n{log.read_text()}")
            return b"ready." in log.read_bytes()

        wait_until(
            ready,
            timeout=timeout,
            interval=0.1,
            what=lambda: f"the worker to be ready:\n{log.read_text()}",
        )

    def stop_all(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def deployment(
    redis_url: str,
    test_database_url: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("deploy")
    broker = redis_url.rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    redis.Redis.from_url(broker).flushdb()
    scratch = scratch_database(test_database_url, tmp)
    upgrade(scratch.url)
    settings = deployment_settings(
        tmp,
        database_url=scratch.url,
        broker_url=broker,
        webhook_allow_private=True,
        job_lease_s=4.0,
        reconcile_interval_s=1.0,
        requeue_after_s=30.0,
        broker_visibility_timeout_s=8.0,
        predict_timeout_s=20.0,
    )
    deployment = Deployment(settings, worker_env(settings))
    yield deployment
    deployment.stop_all()
    redis.Redis.from_url(broker).flushdb()
    scratch.drop()


@pytest.fixture(scope="module")
def worker(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.Popen[bytes]:
    process = deployment.start_worker(tmp_path_factory.mktemp("worker"))
    deployment.wait_ready(process)
    return process


@pytest.fixture
def gateway(deployment: Deployment) -> Iterator[TestClient]:
    with TestClient(create_app(deployment.settings)) as client:
        yield client


@pytest.fixture
def owner(gateway: TestClient) -> Account:
    return register(gateway)
