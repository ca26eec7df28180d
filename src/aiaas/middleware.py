"""Pure ASGI middleware: request ids, metrics, access lines and spans; body size limits.

Both are raw ASGI rather than ``BaseHTTPMiddleware`` so that the hot prediction path pays no
extra task or stream copy per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import Token
from typing import NamedTuple

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiaas.errors import PayloadTooLarge, problem_response
from aiaas.logs import (
    ACCESS_LOGGER,
    REQUEST_ID_HEADER,
    AccessLine,
    RequestContext,
    accept_request_id,
    bind_request,
    unbind_request,
)
from aiaas.metrics import Metrics
from aiaas.tracing import Tracing

UNMATCHED_ROUTE = "<unmatched>"
# Probes and scrapes, every few seconds from every prober: logged only when they fail.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})
# One line per request answered: request_id, account_id, method, route, status, latency_ms.
ACCESS_LOG = AccessLine(ACCESS_LOGGER)


class Started(NamedTuple):
    """A request ``RequestTelemetry.begin`` started."""

    request: RequestContext
    token: Token[RequestContext | None]
    start: float


def request_id_header(request: RequestContext) -> tuple[bytes, bytes]:
    """The ``X-Request-ID`` field of ``request``'s answer."""
    return (REQUEST_ID_HEADER, request.request_id.encode("ascii"))


class RequestTelemetry:
    """Gives every HTTP request its id (``aiaas.logs``), returned in ``X-Request-ID``, and when
    it is answered, counts and times it by route template (never the raw path), logs it in
    one access line and, with tracing on, ends its span.

    As middleware it wraps FastAPI's stack; the prediction lanes, which answer in front of it,
    call ``begin`` and ``end`` themselves and add the id to their own answers (a send wrapper
    per request cost them 3-4 us). The route template is the router's (``scope["route"]``) or
    the one a lane names (``RequestContext.route``)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        *,
        tracing: Tracing | None = None,
        quiet: frozenset[str] = QUIET_ROUTES,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing
        self.quiet = quiet
        # prometheus_client's labels() validates, locks and builds a tuple on every call;
        # the label sets are few (routes x methods x statuses), so their children are kept.
        self._counted: dict[tuple[str, str, int], Counter] = {}
        self._timed: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.begin(scope)
        request = started.request
        id_header = request_id_header(request)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.end(scope, started, status)

    def begin(self, scope: Scope) -> Started:
        """The request's id and context (bound until ``end``), and its span."""
        start = time.perf_counter()
        sent_id = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                sent_id = value
                break
        request = RequestContext(accept_request_id(sent_id))
        token = bind_request(request)
        if self.tracing is not None:
            request.span = self.tracing.start_request(scope)
        return Started(request, token, start)

    def end(self, scope: Scope, started: Started, status: int) -> None:
        """Count, time, log and trace the answered request; unbind its context."""
        seconds = time.perf_counter() - started.start
        request = started.request
        route: BaseRoute | None = scope.get("route")
        template = request.route or getattr(route, "path", None) or UNMATCHED_ROUTE
        method = scope["method"]
        self.record(method, template, status, seconds)
        if status >= 400 or template not in self.quiet:
            ACCESS_LOG.request(request, method, template, status, seconds)
        if self.tracing is not None:
            self.tracing.end_request(request.span, method, template, status, request.request_id)
        unbind_request(started.token)

    def record(self, method: str, template: str, status: int, seconds: float) -> None:
        """Count and time one request."""
        counter = self._counted.get((method, template, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(method, template, str(status))
            self._counted[(method, template, status)] = counter
        counter.inc()
        timer = self._timed.get((method, template))
        if timer is None:
            timer = self.metrics.http_request_duration.labels(method, template)
            self._timed[(method, template)] = timer
        timer.observe(seconds)


class BodyLimitMiddleware:
    """Refuses bodies over the limit for their kind with 413, before any parsing.

    ``limit_for`` picks the limit from the request (path, content type). A declared
    ``Content-Length`` over it is refused at once; a chunked body is counted as it streams.
    """

    LimitFor = Callable[[Scope], int]

    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = _content_length(scope)
        if length is not None and length > limit:
            await problem_response(_too_large(limit))(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if response_started:
                raise
            await problem_response(_too_large(limit))(scope, receive, send)


class _BodyTooLarge(StarletteHTTPException):
    # An HTTPException, because FastAPI turns any other error raised while it reads the body
    # into a 400; this one it re-raises, and the error handler renders it as a 413 problem.
    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit).detail)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is over the limit of {limit} bytes for this route.",
        limit_bytes=limit,
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


RATE_LIMIT_STATE = "rate_limit"


class RateLimitHeaders:
    """Adds the ``RateLimit-*`` fields of the request's rate-limit decision (left in the
    request's state by ``accounts.deps.rate_limited``) to whatever answer the request gets, errors
    included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get(RATE_LIMIT_STATE)
                if decision is not None:
                    message["headers"] = [*message.get("headers", ()), *decision.headers()]
            await send(message)

        await self.app(scope, receive, send_wrapper)
