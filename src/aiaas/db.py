"""Database plumbing: the declarative base, column types shared by every domain, the engine,
and the schema revisions the migration scripts define (``migrate`` runs them).

Nothing connects at import time: :class:`Database` is built by ``create_app`` (or a worker's
process init) from the settings, and routes reach sessions through ``deps.SessionDep``.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, DateTime, Engine, MetaData, create_engine, event, inspect
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DEFAULT_TIMEOUT_S = 5.0

# alembic.ini and migrations/ sit at the root of the source tree (the image keeps that layout).
_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    ini = _ROOT / "alembic.ini"
    if not ini.exists():
        raise FileNotFoundError(f"alembic.ini not found at {ini}; run from a source checkout")
    config = Config(str(ini))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    config.attributes["configure_logger"] = False
    if url:
        # ConfigParser treats % as interpolation; a password may contain one.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class CodeRevisions:
    """The schema revisions the installed migration scripts define."""

    heads: frozenset[str]
    """What ``aiaas db upgrade`` reaches: the schema this code is written for."""
    known: frozenset[str]
    """Every revision id of the scripts: a database at any other was migrated by newer code."""


@functools.cache
def code_revisions() -> CodeRevisions:
    """Read once per process (loading the scripts takes tens of milliseconds), never per probe:
    the scripts of a running process do not change."""
    script = ScriptDirectory.from_config(alembic_config())
    return CodeRevisions(
        heads=frozenset(script.get_heads()),
        known=frozenset(revision.revision for revision in script.walk_revisions()),
    )


def make_engine(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any) -> Engine:
    """An engine that never waits longer than ``timeout_s`` for the database (a connection,
    a pooled connection, a lock) and never writes bound parameters into its errors or logs."""
    parsed = make_url(url)
    # Parameters may hold password hashes, API key hashes or a tenant's data.
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": timeout_s})
        if kwargs.get("poolclass") is not StaticPool:
            kwargs.setdefault("pool_timeout", timeout_s)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, timeout_s=timeout_s))
        # pysqlite opens transactions lazily on its own terms, which breaks SAVEPOINT; hand the
        # transaction boundaries to SQLAlchemy instead (the recipe of SQLAlchemy's docs).
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", timeout_s)
    if parsed.get_backend_name() == "postgresql":
        lock_ms = int(timeout_s * 1000)
        connect_args = {
            # libpq counts whole seconds and treats 1 as 2.
            "connect_timeout": max(2, math.ceil(timeout_s)),
            "options": f"-c lock_timeout={lock_ms}",
            # A server that vanished without closing the socket is noticed within seconds.
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(timeout_s)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
        }
        kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, timeout_s: float) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the gateway read while a worker thread writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front. A deferred transaction that reads and then writes
    # fails with "database is locked" at once, without waiting, when another connection wrote
    # in between; with WAL, readers still proceed while one writer holds the lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine and its session factory."""

    def __init__(self, engine: Engine, session_factory: sessionmaker[Session] | None = None):
        self.engine = engine
        self.session_factory = session_factory or sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Database:
        return cls(make_engine(url, timeout_s=timeout_s))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.session_factory() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise

    def ping(self) -> None:
        # A raw connection: no transaction, so a SQLite writer holding the lock cannot stall it.
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        finally:
            connection.close()

    def schema_revisions(self) -> frozenset[str] | None:
        """The revisions ``alembic_version`` records (none after a downgrade to base), or None
        where the table does not exist: one SELECT on a raw connection, as ``ping``."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute("SELECT version_num FROM alembic_version")
            except Exception:
                # Only now ask why: a missing table is an unmigrated database, not an outage.
                if not inspect(self.engine).has_table("alembic_version"):
                    return None
                raise
            revisions = frozenset(str(row[0]) for row in cursor.fetchall())
            cursor.close()
            return revisions
        finally:
            connection.close()

    def dispose(self) -> None:
        self.engine.dispose()


class _Owned(Protocol):
    owner_id: Any


_OwnedRow = TypeVar("_OwnedRow", bound=_Owned)


def get_owned(
    session: Session,
    entity: type[_OwnedRow],
    ident: uuid.UUID,
    *,
    owner_id: uuid.UUID,
    missing: Exception,
) -> _OwnedRow:
    """The ``entity`` row ``ident`` if ``owner_id`` owns it, else raise ``missing``: another
    account's row is answered exactly as one that does not exist, so ids tell nothing."""
    row = session.get(entity, ident)
    if row is None or row.owner_id != owner_id:
        raise missing
    return row
