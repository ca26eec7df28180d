"""Prediction routes served straight from ASGI: the :class:`Lane` they share, and
``POST /v1/models/{name}/predict`` on it (:class:`PredictFastLane`).

The route in ``routes.py`` documents the interface and serves it when this lane is not
installed; under load, FastAPI's routing, dependency and middleware layers cost more than the
whole prediction (see docs/performance.md), so the gateway answers this one path here with the
same ``PredictPath`` and the same problem documents. The Open Inference Protocol's lane
(``aiaas.v2.lane``) stands on the same :class:`Lane`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.errors import AppError, PayloadTooLarge, problem_response, unavailable
from aiaas.middleware import RequestTelemetry, request_id_header
from aiaas.predictions.sync import PredictPath

log = logging.getLogger(__name__)

PREFIX = "/v1/models/"
SUFFIX = "/predict"


PREDICT_ROUTE = PREFIX + "{name}" + SUFFIX
# A header field of an answer, as ASGI sends it.
Header = tuple[bytes, bytes]

R = TypeVar("R")


class Lane(ABC, Generic[R]):
    """Answers the requests ``route`` claims in front of everything else, the request's id,
    metrics, access line and span included (through ``telemetry``, without its send wrapper:
    a lane adds ``X-Request-ID`` to its own answers), and hands every other request to
    ``app``.

    A lane enforces its own body limit and renders its own errors (``error_response``), so
    none of FastAPI's middleware stack is needed on its paths."""

    def __init__(self, app: ASGIApp, *, max_body: int, telemetry: RequestTelemetry) -> None:
        self.app = app
        self.max_body = max_body
        self.telemetry = telemetry

    @abstractmethod
    def route(self, scope: Scope) -> R | None:
        """What this lane makes of an HTTP request, or None for one it leaves to ``app``."""

    @abstractmethod
    def template(self, route: R) -> str:
        """The route template the request metrics count ``route`` under."""

    @abstractmethod
    async def serve(
        self, scope: Scope, receive: Receive, send: Send, route: R, id_header: Header
    ) -> int:
        """Answer the request, ``id_header`` among the answer's fields; return the status sent.
        Errors are raised as ``AppError``."""

    def error_response(self, error: AppError, url: str) -> Response:
        return problem_response(error, url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        started = self.telemetry.begin(scope)
        started.request.route = self.template(route)
        id_header = request_id_header(started.request)
        # As the middleware counts a request that got no answer (the client left).
        status = 500
        try:
            status = await self.serve(scope, receive, send, route, id_header)
        except ClientGone:
            pass
        except AppError as error:
            status = await self._answer_error(error, scope, receive, send, id_header)
        except Exception as exc:
            problem = unavailable(exc)
            if problem is None:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                problem = AppError("The server failed to handle this request.")
            status = await self._answer_error(problem, scope, receive, send, id_header)
        finally:
            self.telemetry.end(scope, started, status)

    async def _answer_error(
        self, error: AppError, scope: Scope, receive: Receive, send: Send, id_header: Header
    ) -> int:
        response = self.error_response(error, scope["path"])
        response.raw_headers.append(id_header)
        await response(scope, receive, send)
        return response.status_code

    async def read_body(self, receive: Receive, declared: bytes | None) -> bytes:
        """The whole body, refused with 413 past ``max_body``: at once when its declared
        length says so, else as soon as the chunks read add up to more."""
        limit = self.max_body
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                # The client went away; nothing is left to answer.
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class PredictFastLane(Lane[str]):
    """``POST /v1/models/{name}/predict``; the route is the model's name."""

    def __init__(
        self, app: ASGIApp, *, path: PredictPath, max_body: int, telemetry: RequestTelemetry
    ) -> None:
        super().__init__(app, max_body=max_body, telemetry=telemetry)
        self.path = path

    def route(self, scope: Scope) -> str | None:
        url: str = scope.get("path", "")
        if scope["method"] != "POST" or not url.startswith(PREFIX) or not url.endswith(SUFFIX):
            return None
        name = url[len(PREFIX) : -len(SUFFIX)]
        if not name or "/" in name:
            return None
        return name

    def template(self, route: str) -> str:
        return PREDICT_ROUTE

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, route: str, id_header: Header
    ) -> int:
        authorization = content_type = accept = routing_key = None
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
            elif key == b"aiaas-routing-key":
                routing_key = value.decode("latin-1")
        body = await self.read_body(receive, declared)
        ref = None
        if scope["query_string"]:
            values = parse_qs(scope["query_string"].decode("latin-1")).get("version")
            ref = values[-1] if values else None
        result = await self.path.predict(
            name=route,
            ref=ref,
            authorization=authorization,
            content_type=content_type,
            body=body,
            routing_key=routing_key,
        )
        payload, fields = result.render(accept)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields.items()]
        if result.rate_limit is not None:
            headers += result.rate_limit.headers()
        headers.append((b"content-length", b"%d" % len(payload)))
        headers.append(id_header)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return 200


class ClientGone(Exception):
    """The client left before its body was read."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes for this route.", limit_bytes=limit
    )
