"""Small assertions and helpers the test modules share."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from aiaas.logs import ACCESS_LOGGER, LogFormat, configure_logging, flush_logs, reset_logging
from tests.factories import wait_until


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(cwd: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A real ``aiaas serve`` on a free loopback port, run from ``cwd`` (its ``./var``), with
    the environment less any ``AIAAS_`` variable plus ``env``; yields its base URL."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environ.update(env or {})
    # A file, not a pipe: a pipe nobody reads until the end would stop the server once full.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "aiaas", "serve", "--port", str(port), "--log-level", "warning"],
            cwd=cwd,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"the server exited:\n{output()}")
            return False

        def output() -> str:
            process.kill()
            process.wait()
            log.seek(0)
            return log.read().decode(errors="replace")

        try:
            wait_until(
                healthy,
                timeout=60,
                interval=0.2,
                what=lambda: f"the server to come up; it said:\n{output()}",
            )
            yield base
        finally:
            stop_process(process, timeout=20)


def stop_process(process: subprocess.Popen[Any], *, timeout: float) -> None:
    """SIGTERM, then SIGKILL past ``timeout`` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class CapturedLogs:
    """The lines logged while a ``captured_logs`` block runs."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        flush_logs()  # the access and worker lines wait in a buffer for up to 0.2 s
        return self.stream.getvalue()


@contextmanager
def captured_logs(fmt: LogFormat = "json", *, access_log: bool = True) -> Iterator[CapturedLogs]:
    """Every line logged in the block (the process's logging set up as ``aiaas serve`` does,
    on a string), then the logging as it was."""
    captured = CapturedLogs()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt, "INFO", access_log=access_log, stream=captured.stream)
    try:
        yield captured
    finally:
        reset_logging()
        root.setLevel(level)
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET)


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log (a process's log may open with a plain banner)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
