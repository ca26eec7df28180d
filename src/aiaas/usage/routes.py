from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from aiaas.accounts.deps import CurrentPrincipal
from aiaas.deps import SessionDep
from aiaas.errors import PROBLEM_CONTENT_TYPE, MissingScope
from aiaas.metering.meter import UsageMeter
from aiaas.usage import service
from aiaas.usage.schemas import Granularity, UsageRead

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", responses={401: _PROBLEM, 403: _PROBLEM, 422: _PROBLEM})
def get_usage(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    granularity: Granularity = "day",
) -> UsageRead:
    """Your account's usage: predictions, rows, compute seconds and errors per model and
    day (or hour), trainings and their compute seconds, and the bytes you store. Default
    period: the last 30 days. What other gateways and the workers counted shows within one
    flush interval (``AIAAS_USAGE_FLUSH_S``); what this gateway counted, at once."""
    if "models:read" not in principal.scopes:
        raise MissingScope("models:read")
    end = _aware(end) if end else datetime.now(UTC)
    start = _aware(start) if start else end - timedelta(days=30)
    meter: UsageMeter = request.app.state.usage_meter
    return service.usage(
        session,
        meter=meter,
        account_id=principal.user.id,
        start=start,
        end=end,
        granularity=granularity,
    )


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
