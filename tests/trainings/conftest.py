"""Trainings run on threads (embedded) or workers of their own, so these tests use a committed
database rather than the rolled-back connection of the unit tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from tests.factories import Account, register


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


@pytest.fixture
def trainer(client: TestClient) -> Account:
    return register(client)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Frames of an event stream as {"id", "event", "data"} (comments skipped)."""
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
