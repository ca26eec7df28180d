from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status

from aiaas import events
from aiaas.accounts import service
from aiaas.accounts.schemas import (
    AccessToken,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    LoginRequest,
    Me,
    RegisterRequest,
    Scope,
    UserRegistered,
)
from aiaas.deps import CurrentPrincipal, EventsDep, LoginOnly, SessionDep, SettingsDep
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.pagination import PageParams, page_params

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", responses={422: _PROBLEM})


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    tags=["auth"],
    responses={409: _PROBLEM},
)
def register(body: RegisterRequest, session: SessionDep) -> UserRegistered:
    user = service.register(session, email=body.email, password=body.password)
    return UserRegistered.model_validate(user, from_attributes=True)


@router.post("/auth/login", tags=["auth"], responses={401: _PROBLEM})
def login(body: LoginRequest, session: SessionDep, settings: SettingsDep) -> AccessToken:
    token = service.login(
        session,
        email=body.email,
        password=body.password,
        secret=settings.secret,
        ttl_s=settings.access_token_ttl_s,
    )
    return AccessToken(access_token=token, expires_in=settings.access_token_ttl_s)


@router.get("/me", tags=["auth"], responses={401: _PROBLEM})
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
)
def create_api_key(body: ApiKeyCreate, principal: LoginOnly, session: SessionDep) -> ApiKeyCreated:
    api_key, secret = service.create_api_key(session, user=principal.user, spec=body)
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret}
    )


@router.get("/api-keys", tags=["api-keys"], responses={401: _PROBLEM, 403: _PROBLEM})
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
)
def revoke_api_key(
    id: uuid.UUID, principal: LoginOnly, session: SessionDep, bus: EventsDep
) -> Response:
    service.revoke_api_key(session, user=principal.user, key_id=id)
    bus.publish(events.API_KEY_REVOKED, str(id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
