"""One error family, rendered as RFC 9457 ``application/problem+json``.

::

    AppError (500 internal)
    ├── InvalidInput (422)        field problems, with an ``errors`` list
    ├── Unauthenticated (401)     sends ``WWW-Authenticate: Bearer``
    ├── Forbidden (403)
    │   ├── MissingScope (403)    names the scope the credential lacks
    │   ├── AccountSuspended (403)
    │   └── QuotaExceeded (403)   names the quota, its limit and the current use
    ├── NotFound (404)            also another tenant's private resource
    ├── MethodNotAllowed (405)
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── RateLimited (429)         sends ``Retry-After``
    ├── PredictionFailed (500)    the model itself failed on the batch
    ├── ServiceUnavailable (503)  also a database that cannot be reached in time
    └── GatewayTimeout (504)

Services raise these and never ``HTTPException``; :func:`install_error_handlers` turns them, and
FastAPI's and Starlette's own errors, into problem documents. The framework-free core raises its
own (``aiaas.ml.errors``, ``aiaas.storage.errors``): :func:`from_core` is the one place that
maps those to this family, called where the caller knows the input's location, and by the
handlers for whatever reaches them uncaught.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from aiaas.ml import errors as ml
from aiaas.storage import errors as storage

if TYPE_CHECKING:
    # FastAPI is needed only to install the handlers: the error types themselves are imported
    # by code that runs without the web stack (datasets, workers on a bare GPU host).
    from fastapi import FastAPI, Request

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://aiaas.dev/problems/"

log = logging.getLogger(__name__)


class AppError(Exception):
    status: int = 500
    type: str = "internal"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.title
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class InvalidInput(AppError):
    status, type, title = 422, "invalid-input", "Invalid input"


class Unauthenticated(AppError):
    status, type, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(AppError):
    status, type, title = 403, "forbidden", "Forbidden"


class MissingScope(Forbidden):
    type, title = "missing-scope", "Missing scope"

    def __init__(self, scope: str, *alternatives: str) -> None:
        # A route that any of several scopes opens names them all; ``required_scope`` keeps
        # the first, the one a key made for that route would hold.
        names = " or ".join(f"'{name}'" for name in (scope, *alternatives))
        super().__init__(f"This API key lacks the {names} scope.", required_scope=scope)


class NotFound(AppError):
    status, type, title = 404, "not-found", "Not found"


class MethodNotAllowed(AppError):
    status, type, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(AppError):
    status, type, title = 409, "conflict", "Conflict"


class PayloadTooLarge(AppError):
    status, type, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, type, title = 415, "unsupported-media-type", "Unsupported media type"


class AccountSuspended(Forbidden):
    type, title = "account-suspended", "Account suspended"


class QuotaExceeded(Forbidden):
    type, title = "quota-exceeded", "Quota exceeded"

    def __init__(
        self, quota: str, *, limit: int | float, current: int | float, detail: str
    ) -> None:
        super().__init__(detail, quota=quota, limit=limit, current=current)


class RateLimited(AppError):
    status, type, title = 429, "rate-limited", "Too many requests"

    def __init__(
        self, detail: str, *, retry_after_s: float, headers: Mapping[str, str] = {}
    ) -> None:
        # Whole seconds, rounded up: a client that waits exactly this long gets through.
        retry_after = max(1, math.ceil(retry_after_s))
        super().__init__(
            detail, headers={**headers, "Retry-After": str(retry_after)}, retry_after=retry_after
        )


class ServiceUnavailable(AppError):
    status, type, title = 503, "service-unavailable", "Service unavailable"


class GatewayTimeout(AppError):
    status, type, title = 504, "gateway-timeout", "Gateway timeout"


_BY_STATUS: dict[int, type[AppError]] = {
    cls.status: cls
    for cls in (
        InvalidInput,
        Unauthenticated,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        RateLimited,
        ServiceUnavailable,
        GatewayTimeout,
    )
}


class PredictionFailed(AppError):
    status, type, title = 500, "prediction-failed", "Prediction failed"


def invalid(msg: str, *loc: str | int) -> InvalidInput:
    """A 422 with one field problem: ``msg`` at ``loc``."""
    return InvalidInput(msg, errors=[{"loc": list(loc), "msg": msg}])


def from_core(exc: ml.MLError | storage.StorageError, *loc: str | int) -> AppError:
    """The problem for an error the core raised about a request's own input; ``loc`` is where
    in the request that input sits (``"body", "config"``), put before the error's own
    locations. Anything else of the core is the server's fault: 500."""
    where = list(loc)
    match exc:
        case ml.UnknownArchitecture():
            known = ", ".join(exc.known)
            return InvalidInput(
                f"Unknown architecture '{exc.name}'.",
                errors=[{"loc": [*where, "architecture"], "msg": f"expected one of {known}"}],
            )
        case ml.ConfigInvalid():
            return InvalidInput(
                "The architecture config cannot be built.",
                errors=[{**item, "loc": [*where, *item["loc"]]} for item in exc.errors],
            )
        case ml.NotSafetensors():
            msg = f"weights must be safetensors: {exc.reason}"
            return InvalidInput(
                "weights must be safetensors", errors=[{"loc": [*where, "weights"], "msg": msg}]
            )
        case ml.WeightsMismatch():
            return InvalidInput(
                "The weights do not fit the model.",
                errors=[{**item, "loc": [*where, *item["loc"]]} for item in exc.errors],
            )
        case ml.InputInvalid():
            item = exc.to_error()
            return InvalidInput(exc.msg, errors=[{**item, "loc": [*where, *item["loc"]]}])
        case ml.ShapeMismatch():
            return invalid(exc.msg, *where)
        case storage.ArtifactTooLarge():
            return PayloadTooLarge(f"The upload is over the limit of {exc.limit} bytes.")
        case storage.InvalidDigest():
            return invalid(str(exc), *where)
    return AppError()


def unavailable(exc: BaseException) -> AppError | None:
    """The 503 for an error that says a backing service cannot be reached in time (the
    database down, its pool exhausted, SQLite's lock held past the timeout), else None."""
    try:
        from sqlalchemy import exc as sa
    except ImportError:  # a worker without the database stack
        return None
    if isinstance(exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError) or (
        isinstance(exc, sa.DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", type(exc.__cause__ or exc).__name__)
        return ServiceUnavailable(
            "The database did not answer in time; try again shortly.", headers={"Retry-After": "1"}
        )
    return None


def problem_response(error: AppError, instance: str | None = None) -> Response:
    return Response(
        content=orjson.dumps(error.to_problem(instance)),
        status_code=error.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )


def _validation_items(raw: Sequence[Any]) -> list[dict[str, Any]]:
    # The offending input is left out on purpose: it may be a password.
    items = []
    for err in raw:
        item: dict[str, Any] = {"loc": list(err.get("loc", ())), "msg": err.get("msg", "")}
        if "type" in err:
            item["type"] = err["type"]
        ctx = err.get("ctx")
        if ctx:
            item["ctx"] = {
                k: v if isinstance(v, int | float | str) else str(v) for k, v in ctx.items()
            }
        items.append(item)
    return items


def _fields(items: list[dict[str, Any]]) -> str:
    names = []
    for item in items:
        loc = [str(p) for p in item["loc"] if p not in ("body", "query", "path", "header")]
        names.append(".".join(loc) or "body")
    return ", ".join(dict.fromkeys(names))


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return problem_response(exc, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        items = _validation_items(exc.errors())
        error = InvalidInput(f"The request is not valid: {_fields(items)}.", errors=items)
        return problem_response(error, request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}."
        cls = _BY_STATUS.get(exc.status_code, AppError)
        error = AppError(detail, headers=dict(exc.headers or {}))
        error.status, error.type, error.title = cls.status, cls.type, cls.title
        if cls is AppError:
            error.status = exc.status_code
            error.title = HTTPStatus(exc.status_code).phrase
            error.type = error.title.lower().replace(" ", "-")
        error.detail = detail or error.title
        return problem_response(error, request.url.path)

    async def unhandled(request: Request, exc: Exception) -> Response:
        mapped = unavailable(exc)
        if mapped is not None:
            return problem_response(mapped, request.url.path)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(AppError("The server failed to handle this request."))

    async def core_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ml.MLError | storage.StorageError)
        error = from_core(exc)
        if error.status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return problem_response(error, request.url.path)

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(ml.MLError, core_error)
    app.add_exception_handler(storage.StorageError, core_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)
