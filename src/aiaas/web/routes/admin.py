"""Admin pages, for administrators only: the platform's state at a glance, the accounts (their
use, suspension and limit overrides) and the audit log.

Changes go through the admin API's service, so a page and ``PATCH /v1/admin/accounts/{id}``
change an account the same way and leave the same audit event. The overview shows only what
the platform records: job rows, the usage table, this process's metrics and, in embedded mode,
its model cache. Where nothing records a figure (the distributed mode's other gateways and its
workers, whose caches live in their own processes) the page says so rather than guess.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiaas import events
from aiaas.accounts import audit
from aiaas.accounts import service as accounts
from aiaas.accounts.models import User
from aiaas.accounts.schemas import ApiKeyRead
from aiaas.admin import service as admin
from aiaas.admin.schemas import AccountUpdate
from aiaas.config import Settings
from aiaas.db import utcnow
from aiaas.deps import (
    ClientAddress,
    DispatcherDep,
    EventsDep,
    MetricsDep,
    SessionDep,
    SettingsDep,
)
from aiaas.dispatch.inprocess import InProcessDispatcher
from aiaas.errors import Forbidden, InvalidInput
from aiaas.metering.meter import UsageMeter, hour_of
from aiaas.metering.models import UsageHour
from aiaas.pagination import PageParams
from aiaas.quotas import Quota, Quotas
from aiaas.quotas.deps import QuotasDep
from aiaas.quotas.schemas import QuotaRead
from aiaas.quotas.service import default_limit
from aiaas.ratelimits.policy import RouteClass, parse_overrides
from aiaas.usage import service as usage
from aiaas.web import service_state as state
from aiaas.web.pages import (
    Browser,
    FormValues,
    PageRoute,
    Posted,
    SignedIn,
    redirect,
    refused,
    render,
)

router = APIRouter(route_class=PageRoute)
PAGE_SIZE = 50
USAGE_DAYS = 30
# Sign-up and login are limited per client address, never per account: no override applies.
ACCOUNT_RATES = (RouteClass.PREDICT, RouteClass.JOBS, RouteClass.TRAIN, RouteClass.REGISTRY)
AUDIT_ACTIONS = (
    audit.LOGIN,
    audit.LOGIN_FAILED,
    audit.SIGNUP,
    audit.PASSWORD_CHANGED,
    audit.WEBHOOK_SECRET_ROTATED,
    audit.KEY_CREATED,
    audit.KEY_REVOKED,
    audit.MODEL_CREATED,
    audit.MODEL_DELETED,
    audit.MODEL_PUBLISHED,
    audit.MODEL_UNPUBLISHED,
    audit.ADMIN_ACCOUNT_UPDATED,
)
# Negative numbers pass here so that the service refuses them in its own words; 18 digits
# keep a limit inside a 64-bit integer.
WHOLE = re.compile(r"-?\d{1,18}")


def _require_admin(browser: Browser) -> Browser:
    if not browser.user.is_admin:
        raise Forbidden("These pages are for administrators.")
    return browser


def _viewing_admin(browser: SignedIn) -> Browser:
    return _require_admin(browser)


def _posting_admin(browser: Posted) -> Browser:
    return _require_admin(browser)


def _usage_meter(request: Request) -> UsageMeter:
    meter: UsageMeter = request.app.state.usage_meter
    return meter


Admin = Annotated[Browser, Depends(_viewing_admin)]
PostingAdmin = Annotated[Browser, Depends(_posting_admin)]
MeterDep = Annotated[UsageMeter, Depends(_usage_meter)]


# ---- the overview -----------------------------------------------------------------------------


@router.get("/admin")
def overview_page(
    request: Request,
    browser: Admin,
    session: SessionDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    dispatcher: DispatcherDep,
) -> Response:
    # Embedded mode runs every model and job in this process; in the distributed mode they
    # run in workers whose state this gateway cannot read.
    local = dispatcher if isinstance(dispatcher, InProcessDispatcher) else None
    return render(
        request,
        "admin.html",
        viewer=browser,
        embedded=local is not None,
        device=str(local.ctx.device) if local is not None else None,
        jobs=state.jobs(session),
        broker_queues=None if local is not None else state.broker_queues(metrics),
        processes=(
            state.processes(settings.broker_url, timeout_s=settings.broker_timeout_s)
            if settings.broker_url
            else None
        ),
        cache=state.model_cache(local, metrics) if local is not None else None,
        errors=state.errors(session, metrics),
        accounts=state.account_counts(session),
        flush_s=settings.usage_flush_s,
        reconcile_s=settings.reconcile_interval_s,
    )


@router.get("/admin/accounts")
def accounts_page(
    request: Request,
    browser: Admin,
    session: SessionDep,
    settings: SettingsDep,
    meter: MeterDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    rows, next_cursor = admin.list_accounts(
        session, params=PageParams(limit=PAGE_SIZE, cursor=cursor)
    )
    used = _predictions_since(
        session, meter, [row.id for row in rows], utcnow() - timedelta(days=USAGE_DAYS)
    )
    return render(
        request,
        "admin_accounts.html",
        viewer=browser,
        accounts=[{**row.model_dump(), **used[row.id]} for row in rows],
        next_cursor=next_cursor,
        days=USAGE_DAYS,
        flush_s=settings.usage_flush_s,
    )


def _predictions_since(
    session: Session, meter: UsageMeter, ids: list[uuid.UUID], since: datetime
) -> dict[uuid.UUID, dict[str, int]]:
    """Predictions and failed ones per account since ``since`` (whole hours), from the usage
    table plus what this gateway counted and has not flushed yet, as the usage API counts."""
    first_hour = hour_of(since)
    found = {ident: {"predictions": 0, "failed": 0} for ident in ids}
    if not ids:
        return found
    rows = session.execute(
        select(UsageHour.account_id, func.sum(UsageHour.predictions), func.sum(UsageHour.errors))
        .where(UsageHour.account_id.in_(ids), UsageHour.hour >= first_hour)
        .group_by(UsageHour.account_id)
    )
    for account_id, predictions, failed in rows:
        found[account_id]["predictions"] += int(predictions or 0)
        found[account_id]["failed"] += int(failed or 0)
    for ident in ids:
        for (_model, hour), counts in meter.pending(ident).items():
            if hour >= first_hour:
                found[ident]["predictions"] += counts.predictions
                found[ident]["failed"] += counts.errors
    return found


@router.get("/admin/accounts/{account_id}")
def account_page(
    request: Request,
    browser: Admin,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    meter: MeterDep,
    account_id: uuid.UUID,
) -> Response:
    user = admin.get_account(session, account_id=account_id)
    context = _account_context(
        session, user, browser=browser, settings=settings, quotas=quotas, meter=meter
    )
    return render(request, "admin_account.html", viewer=browser, **context)


def _account_context(
    session: Session,
    user: User,
    *,
    browser: Browser,
    settings: Settings,
    quotas: Quotas,
    meter: UsageMeter,
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    overrides = user.limits or {}
    rates = overrides.get("rate_limits") or {}
    quota_overrides = overrides.get("quotas") or {}
    end = utcnow()
    used = usage.usage(
        session,
        meter=meter,
        account_id=user.id,
        start=end - timedelta(days=USAGE_DAYS),
        end=end,
        granularity="day",
    )
    keys, _ = accounts.list_api_keys(
        session, user=user, params=PageParams(limit=PAGE_SIZE, cursor=None)
    )
    return {
        "account": user,
        "own": user.id == browser.user.id,
        "rates": [
            {"name": str(c), "default": getattr(settings, f"rate_limit_{c}")} for c in ACCOUNT_RATES
        ],
        "quotas": [
            _quota_row(row, settings, overridden=row.quota in quota_overrides)
            for row in quotas.report(session, user).data
        ],
        "form": form
        if form is not None
        else {
            **{f"rate_{c}": str(rates.get(str(c)) or "") for c in ACCOUNT_RATES},
            **{f"quota_{q}": _text(quota_overrides.get(str(q))) for q in Quota},
        },
        "usage": used,
        "days": USAGE_DAYS,
        "keys": [ApiKeyRead.model_validate(key) for key in keys],
    }


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _quota_row(row: QuotaRead, settings: Settings, *, overridden: bool) -> dict[str, Any]:
    quota = Quota(row.quota)
    return {
        "name": row.quota,
        "label": row.quota.replace("_", " "),
        # A size is shown through the templates' filesizeformat, a count with its unit.
        "bytes": quota is Quota.STORED_BYTES,
        "unit": row.unit,
        "current": row.current,
        "limit": row.limit,
        "default": default_limit(quota, settings),
        "full": row.limit is not None and row.current >= row.limit,
        "overridden": overridden,
        "model": row.model,
    }


@router.post("/admin/accounts/{account_id}/suspension")
def set_suspension(
    request: Request,
    browser: PostingAdmin,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
    account_id: uuid.UUID,
    suspended: Annotated[Literal["true", "false"], Form()],
) -> Response:
    updated = admin.update_account(
        session,
        admin=browser.user,
        account_id=account_id,
        change=AccountUpdate(suspended=suspended == "true"),
        address=address,
    )
    # As the API does: the gateway's cached credentials of the account are checked anew.
    bus.publish(events.ACCOUNT_CHANGED, str(account_id))
    state = (
        "suspended: its keys, tokens and sign-ins are refused from now on"
        if updated.suspended
        else "resumed"
    )
    return redirect(request, f"/admin/accounts/{account_id}", flash=f"{updated.email} is {state}.")


@router.post("/admin/accounts/{account_id}/limits")
def set_limits(
    request: Request,
    browser: PostingAdmin,
    session: SessionDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    meter: MeterDep,
    bus: EventsDep,
    address: ClientAddress,
    account_id: uuid.UUID,
    fields: FormValues,
) -> Response:
    user = admin.get_account(session, account_id=account_id)
    names = [f"rate_{c}" for c in ACCOUNT_RATES] + [f"quota_{q}" for q in Quota]
    form = {name: fields.get(name, "") for name in names}
    try:
        updated = admin.update_account(
            session,
            admin=browser.user,
            account_id=account_id,
            change=_limits_change(form),
            address=address,
        )
    except InvalidInput as exc:
        session.rollback()
        context = _account_context(
            session, user, browser=browser, settings=settings, quotas=quotas, meter=meter, form=form
        )
        return refused(request, "admin_account.html", browser, _on_form(exc), **context)
    bus.publish(events.ACCOUNT_CHANGED, str(account_id))
    return redirect(
        request, f"/admin/accounts/{account_id}", flash=f"The limits of {updated.email} are saved."
    )


def _limits_change(form: dict[str, str]) -> AccountUpdate:
    """The form as the API's change: an empty field goes back to the default. Each field is
    checked on its own so that a problem shows beside the field that has it."""
    problems: list[dict[str, Any]] = []
    rates: dict[str, str | None] = {}
    for route_class in ACCOUNT_RATES:
        name, text = f"rate_{route_class}", form[f"rate_{route_class}"].strip()
        if text:
            try:
                parse_overrides({str(route_class): text})
            except ValueError as exc:
                problems.append({"loc": [name], "msg": str(exc)})
        rates[str(route_class)] = text or None
    limits: dict[str, int | None] = {}
    for quota in Quota:
        name, text = f"quota_{quota}", form[f"quota_{quota}"].strip()
        if text and not WHOLE.fullmatch(text):
            problems.append({"loc": [name], "msg": "a whole number, or empty for the default"})
        limits[str(quota)] = int(text) if WHOLE.fullmatch(text) else None
    if problems:
        raise InvalidInput("Nothing was changed: please check the fields marked.", errors=problems)
    return AccountUpdate(rate_limits=rates, quotas=limits)


def _on_form(error: InvalidInput) -> InvalidInput:
    """The service's problems under the form's field names (it locates them in the API's
    body: ``["body", "quotas", "models"]``)."""
    if all(len(item.get("loc", ())) == 1 for item in error.errors or []):
        return error
    items = []
    for item in error.errors or []:
        loc = [str(part) for part in item.get("loc", ())]
        field = f"quota_{loc[2]}" if loc[1:2] == ["quotas"] and len(loc) > 2 else loc[-1]
        items.append({"loc": [field], "msg": str(item.get("msg", ""))})
    return InvalidInput(f"Nothing was changed: {error.detail}", errors=items)


# ---- the audit log ----------------------------------------------------------------------------


@router.get("/admin/audit")
def audit_page(
    request: Request,
    browser: Admin,
    session: SessionDep,
    action: Annotated[str, Query(max_length=48)] = "",
    account: uuid.UUID | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    chosen = action.strip() or None
    rows, next_cursor = audit.list_events(
        session,
        params=PageParams(limit=PAGE_SIZE, cursor=cursor),
        account_id=account,
        action=chosen,
    )
    ids = {row.actor_id for row in rows} | {row.account_id for row in rows}
    if account is not None:
        ids.add(account)
    emails = _emails(session, {ident for ident in ids if ident is not None})
    return render(
        request,
        "admin_audit.html",
        viewer=browser,
        events=[
            {
                "id": row.id,
                "at": row.at,
                "action": row.action,
                "actor": _who(row.actor_id, emails),
                "account": _who(row.account_id, emails),
                "target": row.target,
                "address": row.address,
                "detail": json.dumps(row.detail, sort_keys=True) if row.detail else "",
            }
            for row in rows
        ],
        actions=sorted({*AUDIT_ACTIONS, *([chosen] if chosen else [])}),
        action=chosen or "",
        account=_who(account, emails),
        next_cursor=next_cursor,
    )


def _emails(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())


def _who(ident: uuid.UUID | None, emails: dict[uuid.UUID, str]) -> dict[str, Any] | None:
    """An account as the log shows it: its email, or its id once the account is deleted."""
    if ident is None:
        return None
    return {"id": ident, "email": emails.get(ident)}
