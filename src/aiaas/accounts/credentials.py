"""Authentication for the hot path: a short-lived cache in front of ``service.authenticate``.

A prediction request must not pay a database round trip to check its API key. Entries live a
few seconds; revoking a key drops its entry at once in this process (``events.API_KEY_REVOKED``),
so the next request with it is refused.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from aiaas.accounts import security, service
from aiaas.db import Database
from aiaas.errors import MissingScope, Unauthenticated


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, detached from any database session."""

    user_id: uuid.UUID
    scopes: frozenset[str]
    is_admin: bool
    api_key_id: uuid.UUID | None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(scope)


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: Caller
    fresh_until: float
    expires_at: float | None  # wall clock (epoch seconds) of the key's own expiry


class CredentialCache:
    def __init__(self, database: Database, *, secret: str, ttl_s: float = 5.0) -> None:
        self._database = database
        self._secret = secret
        self._ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._by_key_id: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    def cached(self, credential: str) -> Caller | None:
        """The caller if this credential was checked recently; None means ask ``authenticate``."""
        entry = self._entries.get(credential)
        if entry is None or entry.fresh_until < time.monotonic():
            return None
        if entry.expires_at is not None and entry.expires_at <= time.time():
            return None
        return entry.caller

    def authenticate(self, credential: str | None) -> Caller:
        """Check against the database (blocking: call from a worker thread) and remember."""
        if not credential:
            raise Unauthenticated("Send 'Authorization: Bearer <token or API key>'.")
        with self._database.session() as session:
            principal = service.authenticate(session, credential=credential, secret=self._secret)
            key = principal.api_key
            caller = Caller(
                user_id=principal.user.id,
                scopes=principal.scopes,
                is_admin=principal.user.is_admin,
                api_key_id=key.id if key else None,
            )
            if key is None:
                expires = security.token_expiry(credential, secret=self._secret)
            else:
                expires = key.expires_at.timestamp() if key.expires_at else None
        entry = _Entry(caller, time.monotonic() + self._ttl_s, expires)
        with self._lock:
            if len(self._entries) > 100_000:  # bound memory against credential stuffing
                self._entries.clear()
                self._by_key_id.clear()
            self._entries[credential] = entry
            if caller.api_key_id is not None:
                self._by_key_id[caller.api_key_id] = credential
        return caller

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            credential = self._by_key_id.pop(uuid.UUID(key_id), None)
            if credential is not None:
                self._entries.pop(credential, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._by_key_id.clear()
