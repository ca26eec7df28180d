"""Small assertions and helpers the test modules share."""

from __future__ import annotations

import socket
from typing import Any

PASSWORD = "correct horse battery"


def bearer(key_or_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key_or_token}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem document with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for field in ("type", "title", "detail"):
        assert isinstance(body[field], str), field
        assert body[field], field
    return body


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
