from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from aiaas import events
from aiaas.accounts import audit
from aiaas.accounts.deps import AdminUser
from aiaas.admin import service
from aiaas.admin.schemas import AccountPage, AccountRead, AccountUpdate, AuditEventRead, AuditPage
from aiaas.deps import ClientAddress, EventsDep, SessionDep
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.pagination import PageParams, page_params

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={401: _PROBLEM, 403: _PROBLEM, 422: _PROBLEM},
)
Params = Annotated[PageParams, Depends(page_params)]


@router.get("/accounts")
def list_accounts(_admin: AdminUser, session: SessionDep, params: Params) -> AccountPage:
    """Every account with its state, overrides and what it holds, newest first."""
    rows, cursor = service.list_accounts(session, params=params)
    return AccountPage(data=rows, next_cursor=cursor)


@router.patch("/accounts/{id}", responses={404: _PROBLEM})
def update_account(
    id: uuid.UUID,
    body: AccountUpdate,
    admin: AdminUser,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
) -> AccountRead:
    """Suspend or resume an account, or set its rate-limit and quota overrides."""
    updated = service.update_account(
        session, admin=admin, account_id=id, change=body, address=address
    )
    # Cached credentials of the account are dropped: its next request is checked anew.
    bus.publish(events.ACCOUNT_CHANGED, str(id))
    return updated


@router.get("/audit")
def list_audit(
    _admin: AdminUser,
    session: SessionDep,
    params: Params,
    account: Annotated[uuid.UUID | None, Query(description="Only this account's events.")] = None,
    action: Annotated[str | None, Query(max_length=48, description="e.g. login.failed")] = None,
) -> AuditPage:
    """The audit log, newest first: logins, failed logins, keys, models, admin actions."""
    rows, cursor = audit.list_events(session, params=params, account_id=account, action=action)
    return AuditPage(data=[AuditEventRead.model_validate(r) for r in rows], next_cursor=cursor)
