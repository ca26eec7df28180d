"""One live ``aiaas serve`` for the client tests, and a loopback proxy that can fail on cue."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiaas.client import Client
from tests.helpers import live_server


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gateway in embedded mode, shared by the client tests (each makes its own
    account and names, so they do not see each other)."""
    with live_server(tmp_path_factory.mktemp("clients-server")) as base:
        yield base


@dataclass
class FlakyProxy:
    """Forwards to the live server, after answering the next ``failures`` requests itself
    with ``status`` (and ``Retry-After: retry_after``); the next ``lose_answers`` requests are
    forwarded, but their answers replaced by that failure; the next ``cut_streams`` answers
    keep only their first server-sent event, then the connection closes, as a proxy's idle
    timeout would. ``seen`` counts every request; ``last_event_ids`` has the ``Last-Event-ID``
    each request carried (None without one)."""

    upstream: str
    base: str = ""
    failures: int = 0
    lose_answers: int = 0
    cut_streams: int = 0
    status: int = 503
    retry_after: str | None = "0"
    seen: list[str] = field(default_factory=list)
    last_event_ids: list[str | None] = field(default_factory=list)


@pytest.fixture
def flaky(server: str) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(upstream=server)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                proxy.seen.append(f"{self.command} {self.path}")
                proxy.last_event_ids.append(self.headers.get("last-event-id"))
                fail = proxy.failures > 0
                cut = proxy.cut_streams > 0
                if cut:
                    proxy.cut_streams -= 1
                lose = not fail and proxy.lose_answers > 0
                if fail:
                    proxy.failures -= 1
                if lose:
                    proxy.lose_answers -= 1
            if lose:
                self._forward(body)
            if fail or lose:
                payload = (
                    b'{"type": "https://aiaas.dev/problems/unavailable", "title": "Not now",'
                    b' "status": %d, "detail": "failing on purpose"}' % proxy.status
                )
                self.send_response(proxy.status)
                self.send_header("content-type", "application/problem+json")
                if proxy.retry_after is not None:
                    self.send_header("retry-after", proxy.retry_after)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            answer = self._forward(body)
            if cut:
                first = answer.content.split(b"\n\n")[0] + b"\n\n"
                self.send_response(answer.status_code)
                self.send_header("content-type", answer.headers["content-type"])
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(first)
                self.close_connection = True
                return
            self.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def _forward(self, body: bytes) -> httpx.Response:
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
            }
            return httpx.request(
                self.command, proxy.upstream + self.path, headers=headers, content=body
            )

        # http.server's names for the method handlers.
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        httpd.shutdown()
        httpd.server_close()


Sdk = Callable[..., Client]


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """Makes ``Client``s (same arguments) that are closed when the test ends."""
    made: list[Client] = []

    def make(*args: Any, **kwargs: Any) -> Client:
        made.append(Client(*args, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No stray key from the environment or a real config file reaches the client under test."""
    monkeypatch.delenv("AIAAS_BASE_URL", raising=False)
    monkeypatch.delenv("AIAAS_API_KEY", raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("AIAAS_CONFIG", str(path))
    return path
