from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from aiaas.deps import MetricsDep, SettingsDep
from aiaas.errors import ServiceUnavailable, Unauthenticated
from aiaas.metrics import scrape_allowed
from aiaas.operations.service import Readiness, not_ready

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"content": {"application/problem+json": {}}}})
async def readyz(request: Request) -> dict[str, Any]:
    """Every dependency answers (the database, and the broker when one is configured) and the
    database's schema is not behind the code's newest migration."""
    readiness: Readiness = request.app.state.readiness
    results = await run_in_threadpool(readiness.results)
    problem = not_ready(results)
    if problem is not None:
        raise ServiceUnavailable(problem, checks=results)
    return {"status": "ok", "checks": results}


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"content": {"application/problem+json": {}}}},
)
async def metrics(
    metrics: MetricsDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Prometheus text exposition of the platform's own registry; with ``AIAAS_METRICS_TOKEN``
    set, only for ``Authorization: Bearer <token>``. Not served here when the metrics have a
    port of their own (``AIAAS_METRICS_PORT``)."""
    if not scrape_allowed(authorization, settings.scrape_token):
        raise Unauthenticated("Scrapes need the metrics token.")
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
