"""Trainings run on threads (embedded) or workers of their own, so these tests use a committed
database rather than the rolled-back connection of the unit tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Account, register


@pytest.fixture
def client(live_client: TestClient) -> TestClient:
    return live_client


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
