"""Dependencies as ``Annotated`` aliases, so routes declare what they need in one word.

``SessionDep`` a database session; ``SettingsDep`` the settings; ``StoreDep``, ``DispatcherDep``,
``EventsDep``, ``MetricsDep`` the process's shared parts; ``ClientAddress`` the caller's address.
Who the caller is (``CurrentUser``, ``require_scope``...) is ``aiaas.accounts.deps``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.dispatch.base import Dispatcher
from aiaas.events import EventBus
from aiaas.metrics import Metrics
from aiaas.ratelimits import RateLimits
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


def get_rate_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


def address_limited(request: Request, address: ClientAddress, limits: RateLimitsDep) -> None:
    """Sign-up and login have no credential yet: they are limited per client address."""
    request.state.rate_limit = limits.check(limits.address_buckets(address))
