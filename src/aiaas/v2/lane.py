"""Every ``/v2`` route, answered straight from ASGI in front of FastAPI.

Inference is as hot a path as ``/v1`` predict, so it stands on the same ``Lane`` as
``PredictFastLane``: no FastAPI routing or dependencies, its own body limit, its own request
metrics under the route templates below. The rest of ``/v2`` comes along so that the whole
protocol answers alike, errors included: the protocol's ``{"error": "..."}`` rather than the
problem documents of ``/v1``, with 400 for what ``/v1`` answers 422 or 415.

::

    GET  /v2                                        server metadata          no key
    GET  /v2/health/live | /v2/health/ready         liveness, readiness      no key
    GET  /v2/models/{name}[/versions/{version}]             model metadata   predict or models:read
    GET  /v2/models/{name}[/versions/{version}]/ready       model readiness  predict or models:read
    POST /v2/models/{name}[/versions/{version}]/infer       inference        predict
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum
from typing import Final

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aiaas.errors import AppError, MethodNotAllowed, NotFound
from aiaas.middleware import UNMATCHED_ROUTE, RequestTelemetry
from aiaas.predictions.fastlane import Header, Lane
from aiaas.ratelimits import Decision
from aiaas.v2.service import OpenInference
from aiaas.v2.tensors import HEADER_LENGTH

JSON: Final = b"application/json"
BINARY: Final = b"application/octet-stream"


class Kind(Enum):
    SERVER = "server"
    LIVE = "live"
    READY = "ready"
    MODEL = "model"
    MODEL_READY = "model ready"
    INFER = "infer"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    template: str
    method: str | None
    name: str = ""
    version: str | None = None


_FIXED: Final = {
    (): Route(Kind.SERVER, "/v2", "GET"),
    ("health", "live"): Route(Kind.LIVE, "/v2/health/live", "GET"),
    ("health", "ready"): Route(Kind.READY, "/v2/health/ready", "GET"),
}
# The last path segment after a model (and version): what is asked of it.
_ACTIONS: Final = {
    (): (Kind.MODEL, "", "GET"),
    ("ready",): (Kind.MODEL_READY, "/ready", "GET"),
    ("infer",): (Kind.INFER, "/infer", "POST"),
}
_UNKNOWN: Final = Route(Kind.UNKNOWN, UNMATCHED_ROUTE, None)


# Clients ask the same few paths over and over: matched once each, then looked up.
@functools.lru_cache(maxsize=1024)
def match(path: str) -> Route | None:
    """The route of a request path; None for a path outside ``/v2``."""
    if path != "/v2" and not path.startswith("/v2/"):
        return None
    parts = tuple(path[4:].split("/")) if path[4:] else ()
    fixed = _FIXED.get(parts)
    if fixed is not None:
        return fixed
    if len(parts) < 2 or parts[0] != "models" or not all(parts):
        return _UNKNOWN
    name, tail = parts[1], parts[2:]
    version = None
    template = "/v2/models/{name}"
    if tail[:1] == ("versions",) and len(tail) >= 2:
        version, tail = tail[1], tail[2:]
        template += "/versions/{version}"
    action = _ACTIONS.get(tail)
    if action is None:
        return _UNKNOWN
    kind, suffix, method = action
    return Route(kind, template + suffix, method, name, version)


class OpenInferenceLane(Lane[Route]):
    """Answers ``/v2`` from ``service``; everything else goes on to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: OpenInference,
        max_body: int,
        telemetry: RequestTelemetry,
    ) -> None:
        super().__init__(app, max_body=max_body, telemetry=telemetry)
        self.service = service
        self._server_metadata = orjson.dumps(service.server_metadata())

    def route(self, scope: Scope) -> Route | None:
        return match(scope["path"])

    def template(self, route: Route) -> str:
        return route.template

    def error_response(self, error: AppError, url: str) -> Response:
        # What /v1 answers 422 (a field problem), the protocol calls a bad request.
        status = 400 if error.status == 422 else error.status
        return Response(
            orjson.dumps({"error": error.detail}),
            status_code=status,
            media_type=JSON.decode(),
            headers=error.headers,
        )

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, route: Route, id_header: Header
    ) -> int:
        method = scope["method"]
        if route.kind is Kind.UNKNOWN:
            raise NotFound(f"No route matches {method} {scope['path']}.")
        if method != route.method:
            raise MethodNotAllowed(
                f"{method} is not allowed on {scope['path']}.",
                headers={"Allow": route.method or ""},
            )
        headers = dict(scope["headers"])
        authorization = _text(headers.get(b"authorization"))
        service = self.service
        decision: Decision | None = None
        extra: list[tuple[bytes, bytes]] = []
        content_type = JSON
        if route.kind is Kind.INFER:
            body = await self.read_body(receive, headers.get(b"content-length"))
            answer = await service.infer(
                name=route.name,
                ref=route.version,
                authorization=authorization,
                body=body,
                header_length=headers.get(HEADER_LENGTH),
                content_encoding=headers.get(b"content-encoding"),
                routing_key=_text(headers.get(b"aiaas-routing-key")),
            )
            payload, decision = answer.body, answer.rate_limit
            if answer.header_length is not None:
                content_type = BINARY
                extra.append((HEADER_LENGTH, b"%d" % answer.header_length))
        elif route.kind is Kind.MODEL:
            metadata, decision = await service.model_metadata(
                name=route.name, ref=route.version, authorization=authorization
            )
            payload = orjson.dumps(metadata)
        elif route.kind is Kind.MODEL_READY:
            resolved, decision = await service.model(
                name=route.name, ref=route.version, authorization=authorization
            )
            payload = orjson.dumps({"name": resolved.model, "ready": True})
        elif route.kind is Kind.SERVER:
            payload = self._server_metadata
        elif route.kind is Kind.LIVE:
            payload = b'{"live":true}'
        else:
            await service.check_ready()
            payload = b'{"ready":true}'
        extra.append((b"content-type", content_type))
        extra.append((b"content-length", b"%d" % len(payload)))
        if decision is not None:
            extra += decision.headers()
        extra.append(id_header)
        await send({"type": "http.response.start", "status": 200, "headers": extra})
        await send({"type": "http.response.body", "body": payload})
        return 200


def _text(raw: bytes | None) -> str | None:
    return raw.decode("latin-1") if raw is not None else None
