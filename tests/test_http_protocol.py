from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from aiaas.cli.main import _http_protocol
from aiaas.http_protocol import FLUSH_BYTES, CoalescingHttpToolsProtocol, CoalescingTransport


class Recorder:
    """Stands in for the socket's transport: what was written, in which calls."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def coalescing(recorder: Recorder, loop: asyncio.AbstractEventLoop) -> CoalescingTransport:
    return CoalescingTransport(recorder, loop)  # type: ignore[arg-type]


def test_a_head_and_its_body_go_out_in_one_write() -> None:
    async def scenario() -> list[bytes]:
        recorder = Recorder()
        transport = coalescing(recorder, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert recorder.writes == []
        transport.write(b"body")
        assert recorder.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        await asyncio.sleep(0)  # the scheduled flush finds nothing held
        return recorder.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


def test_a_lone_write_goes_out_when_the_loop_iteration_ends() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        transport = coalescing(recorder, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert recorder.writes == []
        await asyncio.sleep(0)
        assert recorder.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]

    asyncio.run(scenario())


def test_big_writes_are_not_copied_and_close_flushes_first() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        transport = coalescing(recorder, asyncio.get_running_loop())
        big = b"x" * FLUSH_BYTES
        transport.write(big)
        assert recorder.writes == [big]
        transport.write(b"head")
        transport.write(big)
        assert recorder.writes == [big, b"head", big]
        transport.write(b"last words")
        transport.close()
        assert recorder.writes[-1] == b"last words"
        assert recorder.closed
        # Everything else is the real transport's.
        assert transport.is_closing()

    asyncio.run(scenario())


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        # A chunked response of several big pieces.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": piece * 100_000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


class _Watched(CoalescingHttpToolsProtocol):
    """The protocol under test, keeping the transport each connection writes through."""

    transports: list[object] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _Watched.transports.append(self.transport)


@pytest.fixture
def server() -> Iterator[str]:
    _Watched.transports.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, http=_Watched, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    host, port = sock.getsockname()
    try:
        for _ in range(200):
            if uv.started:
                break
            threading.Event().wait(0.05)
        assert uv.started
        yield f"http://{host}:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


def test_uvicorn_with_the_protocol_serves_keep_alive_and_streamed_responses(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        for i in range(20):  # one connection, kept alive
            response = client.post("/", content=b"n%d" % i)
            assert response.status_code == 200
            assert response.content == b"echo:n%d" % i
        streamed = client.get("/stream")
        assert streamed.status_code == 200
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.content == b"a" * 100_000 + b"b" * 100_000 + b"c" * 100_000
        # A body that asks for 100-continue first.
        response = client.post("/", content=b"z" * 5000, headers={"Expect": "100-continue"})
        assert response.content == b"echo:" + b"z" * 5000
    # Every answer above went out through the coalescing transport.
    assert _Watched.transports
    assert all(isinstance(t, CoalescingTransport) for t in _Watched.transports)


def test_aiaas_serve_runs_uvicorn_with_the_protocol() -> None:
    assert _http_protocol() is CoalescingHttpToolsProtocol
