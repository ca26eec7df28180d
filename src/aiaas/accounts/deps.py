"""Who is calling, as dependencies: ``CurrentPrincipal`` whoever the bearer credential names
(token or API key); ``CurrentUser`` their account; ``LoginOnly`` refuses API keys (key
management); ``AdminUser`` administrators only; ``require_scope("predict")`` refuses keys without
that scope; ``rate_limited(route_class)`` takes a request from the caller's buckets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aiaas.accounts import service as accounts
from aiaas.accounts.models import User
from aiaas.accounts.service import Principal
from aiaas.accounts.throttle import SignInThrottle
from aiaas.deps import RateLimitsDep, SessionDep, SettingsDep, client_address
from aiaas.errors import Forbidden, MissingScope
from aiaas.logs import note_account
from aiaas.ratelimits import RouteClass

# auto_error=False: a missing header must become our 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A login token or an API key (aiaas_sk_...).")


def get_principal(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # The rate limiter may have authenticated this request already (see rate_limited).
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    credential = credentials.credentials if credentials else None
    principal = accounts.authenticate(session, credential=credential, secret=settings.secret)
    note_account(principal.user.id)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_current_user(principal: CurrentPrincipal) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_login_principal(principal: CurrentPrincipal) -> Principal:
    if principal.via_api_key:
        raise Forbidden("API keys are managed with a login token, not with an API key.")
    return principal


LoginOnly = Annotated[Principal, Depends(get_login_principal)]


def get_admin(principal: CurrentPrincipal) -> User:
    if not principal.user.is_admin:
        raise Forbidden("This route is for administrators.")
    return principal.user


AdminUser = Annotated[User, Depends(get_admin)]


def rate_limited(route_class: RouteClass) -> Callable[..., None]:
    """A dependency that takes one request of ``route_class`` from the caller's buckets
    (429 when they are empty) and leaves the decision for the RateLimit-* headers. It
    authenticates the caller itself (routes reuse that), so a suspended account is refused
    on every limited route, before anything else runs."""

    def check(
        request: Request,
        session: SessionDep,
        settings: SettingsDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        limits: RateLimitsDep,
    ) -> None:
        if credentials is None:  # a public route (the catalogue): limited per address
            buckets = limits.buckets(
                route_class,
                account_id=None,
                credential_id=f"addr:{client_address(request)}",
                overrides={},
            )
            request.state.rate_limit = limits.check(buckets)
            return
        principal = get_principal(request, session, settings, credentials)
        user = principal.user
        key = principal.api_key
        buckets = limits.account_buckets(
            route_class,
            account_id=user.id,
            api_key_id=key.id if key else None,
            overrides=user.limits.get("rate_limits", {}),
        )
        request.state.rate_limit = limits.check(buckets)

    check.__name__ = f"rate_limited_{route_class}"
    return check


def get_throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle = request.app.state.signin_throttle
    return throttle


ThrottleDep = Annotated[SignInThrottle, Depends(get_throttle)]


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            raise MissingScope(scope)
        return principal

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check
