"""JSON logs: the request id (accepted from the client, returned, on every line of the request),
the access line of each request, and no secret on any line."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aiaas.logs import (
    PIPE_BUF,
    REDACTED,
    EventLine,
    LineBuffer,
    RequestContext,
    accept_request_id,
    bind_request,
    flush_logs,
    new_request_id,
    note_account,
    unbind_request,
)
from tests.factories import MLP_CONFIG, Account, api_key, publish, wait_until
from tests.helpers import captured_logs

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    """Every line logged while the test runs, parsed (each must be one JSON object)."""
    with captured_logs() as captured:
        yield lambda: [json.loads(line) for line in captured.text().splitlines()]


def access_lines(lines: Lines) -> list[dict[str, Any]]:
    return [line for line in lines() if line["logger"] == "aiaas.access"]


def test_a_usable_client_id_is_kept_and_anything_else_replaced() -> None:
    assert accept_request_id(b"3f2a9c1e-0b7d-4e1a-9f00-1c2d3e4f5a6b") == (
        "3f2a9c1e-0b7d-4e1a-9f00-1c2d3e4f5a6b"
    )
    assert accept_request_id(b"trace:abc/1+2=3_x.y") == "trace:abc/1+2=3_x.y"
    for bad in (b"", b"a b", b"x" * 129, b"id\x00", b"caf\xc3\xa9", b'"quoted"', b"a\nb"):
        replaced = accept_request_id(bad)
        assert replaced.encode() != bad
        assert accept_request_id(replaced.encode()) == replaced  # a fresh id is a usable one
    fresh = {new_request_id() for _ in range(1000)}
    assert len(fresh) == 1000


def test_a_line_is_one_json_object_with_the_request_and_account(log_lines: Lines) -> None:
    log = logging.getLogger("aiaas.test")
    token = bind_request(RequestContext("req-1"))
    note_account("acct-9")
    try:
        log.info("model %s loaded", "m1", extra={"rows": 3, "api_key": "aiaas_sk_secret"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed")
    finally:
        unbind_request(token)
    log.warning("outside any request")
    first, second, third = log_lines()
    assert first["event"] == "model m1 loaded"
    assert first["level"] == "info"
    assert first["logger"] == "aiaas.test"
    assert first["request_id"] == "req-1"
    assert first["account_id"] == "acct-9"
    assert first["rows"] == 3
    assert first["api_key"] == REDACTED
    assert first["ts"].endswith("Z")
    assert "T" in first["ts"]
    assert "ValueError: boom" in second["exc"]
    assert "request_id" not in third


def test_event_lines_write_the_same_fields(log_lines: Lines) -> None:
    line = EventLine("aiaas.things")
    token = bind_request(RequestContext("req-2"))
    try:
        line("did", count=2, password="hunter2")
    finally:
        unbind_request(token)
    (only,) = log_lines()
    assert only == {
        "ts": only["ts"],
        "level": "info",
        "logger": "aiaas.things",
        "event": "did",
        "request_id": "req-2",
        "count": 2,
        "password": REDACTED,
    }


def test_text_format_names_the_request() -> None:
    with captured_logs("text") as captured:
        token = bind_request(RequestContext("req-3"))
        EventLine("aiaas.access")("request", status=200)
        unbind_request(token)
        text = captured.text()
    assert "aiaas.access: request" in text
    assert "request_id=req-3" in text
    assert "status=200" in text


def test_the_request_id_is_returned_and_on_the_access_line(
    client: TestClient, account: Account, log_lines: Lines
) -> None:
    sent = client.get("/v1/models", headers={**account.headers, "X-Request-ID": "client-id-1"})
    made = client.get("/v1/models", headers=account.headers)
    assert sent.headers["x-request-id"] == "client-id-1"
    assert made.headers["x-request-id"]
    assert made.headers["x-request-id"] != "client-id-1"
    lines = access_lines(log_lines)
    by_id = {line["request_id"]: line for line in lines}
    line = by_id["client-id-1"]
    assert line["method"] == "GET"
    assert line["route"] == "/v1/models"
    assert line["status"] == 200
    assert line["account_id"] == account.id
    assert line["latency_ms"] > 0
    assert made.headers["x-request-id"] in by_id


def test_errors_and_lanes_carry_the_id_too(
    client: TestClient, account: Account, log_lines: Lines
) -> None:
    model = publish(client, account)
    width = MLP_CONFIG["input_dim"]
    key = api_key(client, account, ["predict"])["key"]
    headers = {"Authorization": f"Bearer {key}"}
    ok = client.post(
        f"/v1/models/{model.name}/predict",
        json={"inputs": np.zeros((1, width)).tolist()},
        headers={**headers, "X-Request-ID": "lane-ok"},
    )
    bad = client.post(
        f"/v1/models/{model.name}/predict",
        json={"inputs": [[1, 2]]},
        headers={**headers, "X-Request-ID": "lane-422"},
    )
    v2 = client.get(f"/v2/models/{model.name}", headers={**headers, "X-Request-ID": "v2-meta"})
    missing = client.get("/v1/nowhere", headers={"X-Request-ID": "no-route"})
    assert (ok.status_code, bad.status_code, v2.status_code, missing.status_code) == (
        200,
        422,
        200,
        404,
    )
    for response, sent in ((ok, "lane-ok"), (bad, "lane-422"), (v2, "v2-meta")):
        assert response.headers["x-request-id"] == sent
    by_id = {line["request_id"]: line for line in access_lines(log_lines)}
    assert by_id["lane-ok"]["route"] == "/v1/models/{name}/predict"
    assert by_id["lane-ok"]["status"] == 200
    assert by_id["lane-ok"]["account_id"] == account.id
    assert by_id["lane-422"]["status"] == 422
    assert by_id["v2-meta"]["route"] == "/v2/models/{name}"
    assert by_id["no-route"]["route"] == "<unmatched>"
    assert "account_id" not in by_id["no-route"]


def test_probes_are_logged_only_when_they_fail(client: TestClient, log_lines: Lines) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/v2/health/live").status_code == 200
    assert access_lines(log_lines) == []
    client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    routes = {(line["route"], line["status"]) for line in access_lines(log_lines)}
    assert all(status >= 400 for _, status in routes)


def test_the_access_log_can_be_switched_off(client: TestClient, account: Account) -> None:
    with captured_logs(access_log=False) as captured:
        client.get("/v1/models", headers=account.headers)
        logging.getLogger("aiaas.test").info("still logged")
        loggers = [json.loads(line)["logger"] for line in captured.text().splitlines()]
    assert "aiaas.test" in loggers
    assert "aiaas.access" not in loggers


def test_no_secret_reaches_a_log_line(client: TestClient, log_lines: Lines) -> None:
    """Sign-up, sign-in, a wrong password, key creation, calls with the key and the token, and
    a failing call: neither the password, nor the token, nor the key is in any line."""
    password = "correct horse battery staple 42"
    body = {"email": "logs@example.com", "password": password}
    assert client.post("/v1/auth/register", json=body).status_code == 201
    wrong = client.post("/v1/auth/login", json={**body, "password": "wrong password 0000"})
    assert wrong.status_code == 401
    token = client.post("/v1/auth/login", json=body).json()["access_token"]
    owner_headers = {"Authorization": f"Bearer {token}"}
    created = client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["predict"]}, headers=owner_headers
    )
    key = created.json()["key"]
    client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    client.post("/v1/models/absent/predict", json={}, headers={"Authorization": f"Bearer {key}"})
    client.get("/v1/models", headers={"Authorization": f"Bearer {key}x"})
    logged = json.dumps(log_lines())
    assert len(access_lines(log_lines)) >= 7
    for secret in (password, "wrong password 0000", token, key, key[-12:]):
        assert secret not in logged


def test_a_broken_log_stream_loses_the_line_not_the_caller() -> None:
    """A request's access line is written after its answer, on the request's own task: a
    stream that fails (closed, a broken pipe) must not raise there."""
    with captured_logs() as captured:
        captured.stream.close()
        EventLine("aiaas.access")("request", status=200)
        flush_logs()


def test_lines_are_written_in_whole_lines_below_pipe_buf() -> None:
    """Gathered lines leave in writes of whole lines, each at most PIPE_BUF bytes (atomic on
    a pipe shared with other writers), at once past the buffer's limit and else within its
    flush interval."""
    writes: list[bytes] = []
    buffer = LineBuffer(writes.append, flush_s=0.05, limit=10_000)
    try:
        lines = [b'{"n":%d,"pad":"%s"}\n' % (n, b"x" * (n % 300)) for n in range(200)]
        for line in lines[:-1]:
            buffer.add(line)
        assert writes  # past the limit: written without waiting for the thread
        buffer.add(lines[-1])
        wait_until(lambda: b"".join(writes) == b"".join(lines), timeout=5, what="the flush")
    finally:
        buffer.close()
    assert all(len(data) <= PIPE_BUF and data.endswith(b"\n") for data in writes)
    assert len(writes) < len(lines) / 10
