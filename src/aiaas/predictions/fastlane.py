"""``POST /v1/models/{name}/predict`` served straight from ASGI.

The route in ``routes.py`` documents the interface and serves it when this lane is not
installed; under load, FastAPI's routing, dependency and middleware layers cost more than the
whole prediction (see docs/performance.md), so the gateway answers this one path here with the
same ``PredictPath`` and the same problem documents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.errors import AppError, PayloadTooLarge, problem_response, unavailable
from aiaas.predictions.sync import PredictPath

log = logging.getLogger(__name__)

PREFIX = "/v1/models/"
SUFFIX = "/predict"


PREDICT_ROUTE = PREFIX + "{name}" + SUFFIX

# (method, route template, status, seconds): the request metrics of an answered request.
Record = Callable[[str, str, int, float], None]


class PredictFastLane:
    """Answers the predict route in front of everything else, the request metrics included
    (it records its own through ``record``: one middleware less to pass on every request)."""

    def __init__(self, app: ASGIApp, *, path: PredictPath, max_body: int, record: Record) -> None:
        self.app = app
        self.path = path
        self.max_body = max_body
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        url: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not url.startswith(PREFIX)
            or not url.endswith(SUFFIX)
        ):
            await self.app(scope, receive, send)
            return
        name = url[len(PREFIX) : -len(SUFFIX)]
        if not name or "/" in name:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # As the metrics middleware counts a request that got no answer (the client left).
        status = 500
        try:
            await self._serve(scope, name, receive, send)
            status = 200
        except _ClientGone:
            pass
        except AppError as error:
            status = error.status
            await problem_response(error, url)(scope, receive, send)
        except Exception as exc:
            problem = unavailable(exc)
            if problem is None:
                log.exception("unhandled error on POST %s", url)
                problem = AppError("The server failed to handle this request.")
            status = problem.status
            await problem_response(problem, url)(scope, receive, send)
        finally:
            self.record("POST", PREDICT_ROUTE, status, time.perf_counter() - start)

    async def _serve(self, scope: Scope, name: str, receive: Receive, send: Send) -> None:
        authorization = content_type = accept = None
        declared = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == b"content-length":
                declared = value
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise _too_large(self.max_body)
        body = await _read_body(receive, self.max_body)
        ref = None
        if scope["query_string"]:
            values = parse_qs(scope["query_string"].decode("latin-1")).get("version")
            ref = values[-1] if values else None
        result = await self.path.predict(
            name=name,
            ref=ref,
            authorization=authorization,
            content_type=content_type,
            body=body,
        )
        payload, fields = result.render(accept)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields.items()]
        if result.rate_limit is not None:
            headers += result.rate_limit.headers()
        headers.append((b"content-length", b"%d" % len(payload)))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            # The client went away; nothing is left to answer.
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _ClientGone(Exception):
    pass


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes for this route.", limit_bytes=limit
    )
