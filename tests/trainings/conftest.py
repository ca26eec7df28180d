"""Trainings run on threads (embedded) or workers of their own, so these tests use a committed
database rather than the rolled-back connection of the unit tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from tests.conftest import Account
from tests.helpers import PASSWORD

FINISHED = ("succeeded", "failed", "canceled")


@pytest.fixture
def live_settings(settings: Settings, committed_url: str, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "database_url": committed_url,
            "artifacts_url": str(tmp_path / "artifacts"),
            "reconcile_interval_s": 3600.0,
        }
    )


@pytest.fixture
def client(live_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(live_settings), raise_server_exceptions=False) as test_client:
        yield test_client


def register(client: TestClient) -> Account:
    email = f"trainer-{uuid.uuid4().hex[:8]}@example.com"
    created = client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return Account(created.json()["id"], email, PASSWORD, token["access_token"])


@pytest.fixture
def trainer(client: TestClient) -> Account:
    return register(client)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_training(
    client: TestClient, training_id: str, headers: dict[str, str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/trainings/{training_id}", headers=headers).json()
        if body["status"] in FINISHED:
            return body
        time.sleep(0.1)
    raise AssertionError(f"training {training_id} did not finish: {body}")


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Frames of an event stream as {"id", "event", "data"} (comments skipped)."""
    import json

    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            fields["data"] = json.loads(fields["data"])
            fields["id"] = int(fields["id"])
            frames.append(fields)
    return frames
