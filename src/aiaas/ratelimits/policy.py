"""Who is limited how: route classes, per-key and per-account buckets, admin overrides.

Every call of a limited route takes one token from two buckets: its credential's (the API key,
or the account's login tokens together) at the class's rate, and its account's at that rate
times ``AIAAS_RATE_LIMIT_ACCOUNT_MULTIPLIER``, so one key cannot use up what the account's other
keys need, and many keys cannot multiply an account's share. An admin may override an account's
rate per class (``PATCH /v1/admin/accounts/{id}``). Sign-up and login are limited per client
address (the ``auth`` class) since they have no credential yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum

from aiaas.config import Settings
from aiaas.errors import RateLimited
from aiaas.ratelimits.limiter import Bucket, Decision, Limiter, MemoryLimiter, Rate


class RouteClass(StrEnum):
    PREDICT = "predict"
    JOBS = "jobs"
    TRAIN = "train"
    REGISTRY = "registry"
    AUTH = "auth"


def _defaults(settings: Settings) -> dict[RouteClass, Rate | None]:
    return {
        RouteClass.PREDICT: Rate.parse(settings.rate_limit_predict),
        RouteClass.JOBS: Rate.parse(settings.rate_limit_jobs),
        RouteClass.TRAIN: Rate.parse(settings.rate_limit_train),
        RouteClass.REGISTRY: Rate.parse(settings.rate_limit_registry),
        RouteClass.AUTH: Rate.parse(settings.rate_limit_auth),
    }


def parse_overrides(raw: Mapping[str, str | None]) -> dict[RouteClass, Rate | None]:
    """An admin's overrides, checked: unknown classes and malformed rates raise ValueError."""
    parsed: dict[RouteClass, Rate | None] = {}
    for name, text in raw.items():
        route_class = RouteClass(name)
        parsed[route_class] = None if text is None else Rate.parse(text)
    return parsed


class RateLimits:
    """The limiter and the rates; one per gateway, built by ``create_app``."""

    def __init__(self, settings: Settings, limiter: Limiter | None = None) -> None:
        self.limiter: Limiter = limiter or MemoryLimiter()
        # An in-process limiter answers at once: the predict lane calls it without awaiting.
        self.local = isinstance(self.limiter, MemoryLimiter)
        self._defaults = _defaults(settings)
        self._multiplier = settings.rate_limit_account_multiplier

    def rate(self, route_class: RouteClass, overrides: Mapping[str, str | None]) -> Rate | None:
        """The per-credential rate of ``route_class`` for an account with these overrides.
        A null override goes back to the default; "0" switches the limit off."""
        text = overrides.get(route_class.value)
        return Rate.parse(text) if text is not None else self._defaults[route_class]

    def buckets(
        self,
        route_class: RouteClass,
        *,
        account_id: uuid.UUID | None,
        credential_id: str,
        overrides: Mapping[str, str | None],
    ) -> list[Bucket]:
        """The buckets one call takes from; without an account (a public route), the
        credential's alone."""
        rate = self.rate(route_class, overrides)
        if rate is None:
            return []
        buckets: list[Bucket] = [(f"{route_class}:cred:{credential_id}", rate)]
        if account_id is not None:
            account_rate = Rate(max(1, round(rate.count * self._multiplier)), rate.period_s)
            buckets.append((f"{route_class}:acct:{account_id}", account_rate))
        return buckets

    def account_buckets(
        self,
        route_class: RouteClass,
        *,
        account_id: uuid.UUID,
        api_key_id: uuid.UUID | None,
        overrides: Mapping[str, str | None],
    ) -> list[Bucket]:
        """The buckets of a signed-in call: an API key's, or (without one: a login token or
        the dashboard's session) the account's login bucket, with the account's."""
        return self.buckets(
            route_class,
            account_id=account_id,
            credential_id=credential_id(api_key_id, account_id),
            overrides=overrides,
        )

    def address_buckets(self, address: str) -> list[Bucket]:
        rate = self._defaults[RouteClass.AUTH]
        return [] if rate is None else [(f"auth:addr:{address}", rate)]

    def check(self, buckets: list[Bucket]) -> Decision | None:
        """The decision (None when nothing limits this call); raises RateLimited when over."""
        if not buckets:
            return None
        return enforce(self.limiter.hit(buckets))

    async def acheck(self, buckets: list[Bucket]) -> Decision | None:
        if not buckets:
            return None
        return enforce(await self.limiter.ahit(buckets))


def enforce(decision: Decision) -> Decision:
    if not decision.allowed:
        raise RateLimited(
            f"Too many requests; retry in {decision.retry_after_s:.1f} s.",
            retry_after_s=decision.retry_after_s,
            headers={k.decode(): v.decode() for k, v in decision.headers()},
        )
    return decision


def credential_id(api_key_id: uuid.UUID | None, account_id: uuid.UUID) -> str:
    """An API key is a bucket of its own; an account's login tokens share one."""
    return f"key:{api_key_id}" if api_key_id is not None else f"login:{account_id}"
