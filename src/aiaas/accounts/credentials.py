"""Authentication for the hot path: a short-lived cache in front of ``service.authenticate``.

A prediction request must not pay a database round trip to check its API key. Entries are
trusted for ``AIAAS_AUTH_CACHE_TTL_S`` and refreshed in the background after that; revoking a
key drops its entry at once in this process (``events.API_KEY_REVOKED``), so the next request
with it is refused here, and other gateways see it within about twice the TTL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiaas.accounts import service
from aiaas.caching import RefreshingCache
from aiaas.db import Database
from aiaas.errors import MissingScope, Unauthenticated


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, detached from any database session."""

    user_id: uuid.UUID
    scopes: frozenset[str]
    is_admin: bool
    api_key_id: uuid.UUID | None
    # The account's rate-limit overrides (an admin's), by route class.
    rate_overrides: Mapping[str, str | None] = field(default_factory=dict)

    def require(self, scope: str, *alternatives: str) -> None:
        """Refuse a caller holding none of ``scope`` and ``alternatives``."""
        if scope in self.scopes or not self.scopes.isdisjoint(alternatives):
            return
        raise MissingScope(scope, *alternatives)


@dataclass(frozen=True, slots=True)
class _Checked:
    caller: Caller
    expires_at: float | None  # epoch seconds of the key's or token's own expiry


class CredentialCache:
    def __init__(self, database: Database, *, secret: str, ttl_s: float = 5.0) -> None:
        self._database = database
        self._secret = secret
        self._cache: RefreshingCache[str, _Checked] = RefreshingCache(ttl_s=ttl_s)
        self._by_key_id: dict[uuid.UUID, str] = {}
        self._lock = threading.Lock()

    async def caller(self, credential: str | None) -> Caller:
        if not credential:
            raise Unauthenticated("Send 'Authorization: Bearer <token or API key>'.")
        checked = await self._cache.get(credential, lambda: self._check(credential))
        if checked.expires_at is not None and checked.expires_at <= time.time():
            self._cache.forget(lambda k: k == credential)
            raise Unauthenticated("The credential has expired.")
        return checked.caller

    def _check(self, credential: str) -> _Checked:
        with self._database.session() as session:
            principal = service.authenticate(session, credential=credential, secret=self._secret)
            key = principal.api_key
            caller = Caller(
                user_id=principal.user.id,
                scopes=principal.scopes,
                is_admin=principal.user.is_admin,
                api_key_id=key.id if key else None,
                rate_overrides=dict(principal.user.limits.get("rate_limits", {})),
            )
            expires = principal.expires_at.timestamp() if principal.expires_at else None
        if key is not None:
            with self._lock:
                self._by_key_id[key.id] = credential
        return _Checked(caller, expires)

    def forget_account(self, user_id: str) -> None:
        """Drop every cached credential of this account (suspended, limits changed): its
        next request is checked against the database again."""
        ident = uuid.UUID(user_id)
        self._cache.forget_where(lambda _key, checked: checked.caller.user_id == ident)

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            credential = self._by_key_id.pop(uuid.UUID(key_id), None)
        if credential is not None:
            self._cache.forget(lambda k: k == credential)
