"""API keys: list, create (the secret shown this once), revoke."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from pydantic import ValidationError

from aiaas import events
from aiaas.accounts import service as accounts
from aiaas.accounts.schemas import ApiKeyCreate, ApiKeyRead, Scope
from aiaas.deps import ClientAddress, EventsDep, SessionDep
from aiaas.errors import AppError, invalid
from aiaas.pagination import PageParams
from aiaas.web.pages import (
    Browser,
    PageRoute,
    Posted,
    SignedIn,
    invalid_form,
    messages,
    redirect,
    render,
)

router = APIRouter(route_class=PageRoute)
# The page lists the newest keys; an account with more revokes them through the API.
SHOWN_KEYS = 200


def _keys_page(
    request: Request, browser: Browser, session: SessionDep, *, status: int = 200, **context: object
) -> Response:
    rows, _ = accounts.list_api_keys(
        session, user=browser.user, params=PageParams(limit=SHOWN_KEYS, cursor=None)
    )
    context.setdefault("form", {"scopes": [str(s) for s in Scope]})
    return render(
        request,
        "keys.html",
        viewer=browser,
        status=status,
        keys=[ApiKeyRead.model_validate(row) for row in rows],
        scopes=[str(s) for s in Scope],
        **context,
    )


@router.get("/keys")
def keys_page(request: Request, browser: SignedIn, session: SessionDep) -> Response:
    return _keys_page(request, browser, session)


@router.post("/keys")
def create_key(
    request: Request,
    browser: Posted,
    session: SessionDep,
    address: ClientAddress,
    name: Annotated[str, Form()] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_in_days: Annotated[str, Form()] = "",
) -> Response:
    form = {"name": name, "scopes": scopes or [], "expires_in_days": expires_in_days}
    try:
        spec = ApiKeyCreate.model_validate(
            {
                "name": name.strip(),
                "scopes": scopes or [],
                "expires_in_days": _days(expires_in_days),
            }
        )
        created, secret = accounts.create_api_key(
            session, user=browser.user, spec=spec, address=address
        )
    except ValidationError as exc:
        error: AppError = invalid_form(exc)
    except AppError as exc:
        error = exc
    else:
        return _keys_page(request, browser, session, created=created, secret=secret)
    return _keys_page(request, browser, session, status=error.status, form=form, **messages(error))


def _days(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise invalid(
            "a whole number of days, or empty for a key that never expires", "expires_in_days"
        )
    return int(text)


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    request: Request,
    key_id: uuid.UUID,
    browser: Posted,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
) -> Response:
    accounts.revoke_api_key(session, user=browser.user, key_id=key_id, address=address)
    bus.publish(events.API_KEY_REVOKED, str(key_id))
    return redirect(request, "/keys", flash="The key is revoked: it no longer opens anything.")
