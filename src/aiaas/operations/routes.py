from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from aiaas.deps import DatabaseDep, MetricsDep, SettingsDep
from aiaas.errors import ServiceUnavailable
from aiaas.operations.service import readiness_checks, run_checks

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"content": {"application/problem+json": {}}}})
async def readyz(settings: SettingsDep, database: DatabaseDep) -> dict[str, Any]:
    """Every dependency answers: the database, and the broker when one is configured."""
    checks = readiness_checks(settings, database)
    results = await run_in_threadpool(run_checks, checks, timeout_s=settings.readiness_timeout_s)
    down = {name: why for name, why in results.items() if why != "ok"}
    if down:
        raise ServiceUnavailable(
            "Not ready: " + ", ".join(f"{name} is down ({why})" for name, why in down.items()),
            checks=results,
        )
    return {"status": "ok", "checks": results}


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of the platform's own registry."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
