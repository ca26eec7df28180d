from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from aiaas import events
from aiaas.accounts import service
from aiaas.accounts.deps import CurrentPrincipal, LoginOnly, ThrottleDep, rate_limited
from aiaas.accounts.schemas import (
    AccessToken,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    LoginRequest,
    Me,
    PasswordChange,
    RegisterRequest,
    Scope,
    UserRegistered,
    WebhookSecret,
)
from aiaas.deps import ClientAddress, EventsDep, SessionDep, SettingsDep, address_limited
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.pagination import PageParams, page_params
from aiaas.ratelimits import RouteClass

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", responses={422: _PROBLEM, 429: _PROBLEM})
_LIMITED = [Depends(rate_limited(RouteClass.REGISTRY))]


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    tags=["auth"],
    responses={409: _PROBLEM},
    dependencies=[Depends(address_limited)],
)
def register(
    body: RegisterRequest, session: SessionDep, throttle: ThrottleDep, address: ClientAddress
) -> UserRegistered:
    user = service.register(
        session, email=body.email, password=body.password, address=address, throttle=throttle
    )
    return UserRegistered.model_validate(user, from_attributes=True)


@router.post(
    "/auth/login",
    tags=["auth"],
    responses={401: _PROBLEM, 403: _PROBLEM},
    dependencies=[Depends(address_limited)],
)
def login(
    body: LoginRequest,
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
    address: ClientAddress,
) -> AccessToken:
    token = service.login(
        session,
        email=body.email,
        password=body.password,
        secret=settings.secret,
        ttl_s=settings.access_token_ttl_s,
        address=address,
        throttle=throttle,
    )
    return AccessToken(access_token=token, expires_in=settings.access_token_ttl_s)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
    responses={401: _PROBLEM, 403: _PROBLEM},
    dependencies=_LIMITED,
)
def change_password(
    body: PasswordChange,
    principal: LoginOnly,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
) -> Response:
    """Set a new password. Every login token issued before, this one included, stops working;
    sign in again. API keys are not affected."""
    service.change_password(
        session,
        user=principal.user,
        current=body.current_password,
        new=body.new_password,
        address=address,
    )
    bus.publish(events.ACCOUNT_CHANGED, str(principal.user.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/me/webhook-secret",
    tags=["auth"],
    responses={401: _PROBLEM, 403: _PROBLEM},
    dependencies=_LIMITED,
)
def rotate_webhook_secret(
    principal: LoginOnly, session: SessionDep, address: ClientAddress
) -> WebhookSecret:
    """A new webhook signing secret; deliveries from now on are signed with it."""
    secret = service.rotate_webhook_secret(session, user=principal.user, address=address)
    return WebhookSecret(webhook_secret=secret)


@router.get("/me", tags=["auth"], responses={401: _PROBLEM}, dependencies=_LIMITED)
def me(principal: CurrentPrincipal) -> Me:
    user = principal.user
    secret = user.webhook_secret if Scope.ACCOUNT_READ in principal.scopes else None
    return Me(
        id=user.id,
        email=user.email,
        created_at=user.created_at,
        role=user.role,
        webhook_secret=secret,
    )


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    tags=["api-keys"],
    responses={401: _PROBLEM, 403: _PROBLEM},
    dependencies=_LIMITED,
)
def create_api_key(
    body: ApiKeyCreate, principal: LoginOnly, session: SessionDep, address: ClientAddress
) -> ApiKeyCreated:
    api_key, secret = service.create_api_key(
        session, user=principal.user, spec=body, address=address
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret}
    )


@router.get(
    "/api-keys", tags=["api-keys"], responses={401: _PROBLEM, 403: _PROBLEM}, dependencies=_LIMITED
)
def list_api_keys(
    principal: LoginOnly,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> ApiKeyPage:
    rows, cursor = service.list_api_keys(session, user=principal.user, params=params)
    return ApiKeyPage(data=[ApiKeyRead.model_validate(r) for r in rows], next_cursor=cursor)


@router.delete(
    "/api-keys/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["api-keys"],
    responses={401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM},
    dependencies=_LIMITED,
)
def revoke_api_key(
    id: uuid.UUID, principal: LoginOnly, session: SessionDep, bus: EventsDep, address: ClientAddress
) -> Response:
    service.revoke_api_key(session, user=principal.user, key_id=id, address=address)
    bus.publish(events.API_KEY_REVOKED, str(id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
