"""The application factory: ``create_app(settings)`` builds everything; importing builds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Scope

from aiaas import __version__
from aiaas.accounts.routes import router as accounts_router
from aiaas.config import Settings, get_settings
from aiaas.db import Database
from aiaas.errors import install_error_handlers
from aiaas.metrics import Metrics
from aiaas.middleware import BodyLimitMiddleware, MetricsMiddleware
from aiaas.operations.routes import router as operations_router

MB = 1024 * 1024
_PREDICTION_SUFFIXES = ("/predict", "/infer", "/explain")


def body_limits(settings: Settings) -> BodyLimitMiddleware.LimitFor:
    json_limit = int(settings.max_json_mb * MB)
    request_limit = int(settings.max_request_mb * MB)
    upload_limit = int(settings.max_upload_mb * MB)

    def limit_for(scope: Scope) -> int:
        path: str = scope["path"].rstrip("/")
        if path.endswith(_PREDICTION_SUFFIXES) or path == "/v1/predictions":
            return request_limit
        for name, value in scope["headers"]:
            if name == b"content-type" and value.lower().startswith(b"multipart/"):
                return upload_limit
        return json_limit

    return limit_for


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
) -> FastAPI:
    """Build the gateway. ``database`` lets tests hand in a session factory bound to a rolled-back
    transaction; otherwise one is made from the settings and disposed at shutdown."""
    settings = (settings or get_settings()).with_secret_key()
    owns_database = database is None
    db = database or Database.from_url(settings.resolved_database_url)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_database:
            db.dispose()

    app = FastAPI(
        title="aiaas",
        version=__version__,
        summary="AI models as a service: register, pick a model, call its interface.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.metrics = metrics

    install_error_handlers(app)
    app.include_router(operations_router)
    app.include_router(accounts_router)

    # Last added runs first: metrics see every response, the 413s included.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
