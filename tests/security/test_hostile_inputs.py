"""Inputs an attacker crafts get a clear 4xx, and nothing they send ends up in logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aiaas.db import Database
from tests.factories import Account, publish
from tests.helpers import assert_problem, bearer


def npy_with_dims(dims: bytes) -> bytes:
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + b"), }"
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("dims", [b"9" * 5000 + b", 4", b"1, " + b"7" * 4400])
def test_an_npy_header_with_a_5000_digit_dimension_is_a_422(
    client: TestClient,
    account: Account,
    make_key: Callable[..., dict[str, Any]],
    dims: bytes,
) -> None:
    publish(client, account, name="npy-target")
    key = make_key(["predict"])["key"]
    answer = client.post(
        "/v1/models/npy-target/predict",
        content=npy_with_dims(dims),
        headers={**bearer(key), "Content-Type": "application/x-npy"},
    )
    problem = assert_problem(answer, 422)
    assert "too large" in problem["detail"]


def test_failed_statements_never_show_their_bound_parameters(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "argon2-hash-that-must-not-leak-0123456789"
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    with db.session() as session, pytest.raises(DBAPIError) as raised:
        # Fails on both backends with the secret bound beside it (and not echoed by the
        # server itself, as a constraint violation's detail is on PostgreSQL).
        session.execute(
            text("SELECT no_such_column FROM users WHERE email = :hash"), {"hash": secret}
        )
    assert secret not in str(raised.value)
    assert "parameters hidden" in str(raised.value)
    assert secret not in caplog.text
