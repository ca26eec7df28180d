from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aiaas.accounts.deps import CurrentUser
from aiaas.deps import SessionDep
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.quotas.deps import QuotasDep
from aiaas.quotas.schemas import QuotaList

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", tags=["quotas"])


@router.get("/quotas", responses={401: _PROBLEM, 403: _PROBLEM})
def list_quotas(user: CurrentUser, session: SessionDep, quotas: QuotasDep) -> QuotaList:
    """Your account's quotas: each one's limit (null: unlimited) and what you use now. Any
    login token or API key of the account may read them."""
    return quotas.report(session, user)
