"""Concurrent sync requests for one version share forward passes, and lose nothing by it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from tests.factories import Account
from tests.predictions.conftest import Deployed

REQUESTS = 48


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    # A short wait lets concurrent requests meet in one batch however the threads are scheduled.
    # Long cache lifetimes: the test's single database connection must not be used by many
    # request threads at once, as it would be if they all missed the caches together.
    return settings.model_copy(
        update={
            "max_delay_ms": 20.0,
            "max_batch_size": 64,
            "auth_cache_ttl_s": 300.0,
            "model_cache_ttl_s": 300.0,
        }
    )


@pytest.fixture
def client(app_settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings, database=db)) as test_client:
        yield test_client


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_concurrent_requests_share_forward_passes(
    client: TestClient, deploy: Callable[..., Deployed], account: Account
) -> None:
    model = deploy()
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(REQUESTS, 4)).astype(np.float32)
    url = f"/v1/models/{model.name}/predict"
    warm = client.post(url, json={"inputs": [rows[0].tolist()]}, headers=model.headers)
    assert warm.status_code == 200
    before = client.get("/metrics").text

    def call(i: int) -> list[float]:
        response = client.post(url, json={"inputs": [rows[i].tolist()]}, headers=model.headers)
        assert response.status_code == 200, response.text
        outputs: list[float] = response.json()["outputs"][0]
        return outputs

    with ThreadPoolExecutor(REQUESTS) as pool:
        answers = np.array(list(pool.map(call, range(REQUESTS))), dtype=np.float32)

    metrics = client.get("/metrics").text
    passes = _metric(metrics, "aiaas_batch_size_count") - _metric(before, "aiaas_batch_size_count")
    examples = _metric(metrics, "aiaas_batch_size_sum") - _metric(before, "aiaas_batch_size_sum")
    assert examples == REQUESTS
    assert passes < REQUESTS, f"{passes} forward passes for {REQUESTS} requests"
    # Each answer equals the model run on that example alone.
    for i in range(REQUESTS):
        alone = model.expected(rows[i : i + 1])[0]
        np.testing.assert_allclose(answers[i], alone, rtol=1e-5, atol=1e-6)
