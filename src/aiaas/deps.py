"""Dependencies as ``Annotated`` aliases, so routes declare what they need in one word.

``SessionDep`` a database session; ``SettingsDep`` the settings; ``CurrentPrincipal`` whoever the
bearer credential names (token or API key); ``CurrentUser`` their account; ``LoginOnly`` refuses
API keys (key management); ``require_scope("predict")`` refuses keys without that scope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from aiaas.accounts import service as accounts
from aiaas.accounts.models import User
from aiaas.accounts.service import Principal
from aiaas.config import Settings
from aiaas.db import Database
from aiaas.dispatch.base import Dispatcher
from aiaas.errors import Forbidden, MissingScope
from aiaas.events import EventBus
from aiaas.metrics import Metrics
from aiaas.storage import ArtifactStore


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


def get_events(request: Request) -> EventBus:
    bus: EventBus = request.app.state.events
    return bus


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
# scope="function": the session closes (its transaction ends, its connection goes back to the
# pool) when the route function returns, before the response is sent. A client that reads a
# streamed download slowly, or not at all, must not hold a transaction: on SQLite every
# transaction takes the database's one write lock, and every other account would wait on it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
EventsDep = Annotated[EventBus, Depends(get_events)]

# auto_error=False: a missing header must become our 401 problem, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="A login token or an API key (aiaas_sk_...).")


def get_principal(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    credential = credentials.credentials if credentials else None
    return accounts.authenticate(session, credential=credential, secret=settings.secret)


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


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes:
            raise MissingScope(scope)
        return principal

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check
