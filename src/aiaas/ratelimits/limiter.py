"""Rate limiting with GCRA (the generic cell rate algorithm), in memory or in Redis.

A limit of ``count`` per ``period`` lets a burst of ``count`` through, then one request every
``period / count``. Each bucket stores one number, its *theoretical arrival time* (TAT): the
moment the bucket would be empty again. A request is let through when adding one emission
interval keeps the TAT within one period of now.

One call checks several buckets at once (an API key's and its account's) and consumes from
them only if all of them let the request through, so a refused request costs nothing.

In embedded mode the buckets live in this process (:class:`MemoryLimiter`); in distributed
mode in Redis (:class:`RedisLimiter`), updated by one Lua script whose clock is Redis's own,
so every gateway shares one limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiaas.config import RATE_PERIODS, parse_rate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    period_s: float
    interval_s: float = field(init=False)  # period / count: the time one request costs

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval_s", self.period_s / self.count)

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"2000/second"``, ``"60/minute"``...; ``"0"`` (or ``"0/second"``) is no limit."""
        parsed = parse_rate(text)
        return None if parsed is None else cls(*parsed)

    def __str__(self) -> str:
        unit = next(name for name, seconds in RATE_PERIODS.items() if seconds == self.period_s)
        return f"{self.count}/{unit}"


class Decision:
    """One call's verdict and what its RateLimit-* headers say.

    A plain slotted class rather than a frozen dataclass: one is made per predict request,
    and a frozen dataclass's ``__init__`` costs three times as much."""

    __slots__ = ("allowed", "limit", "remaining", "reset_s", "retry_after_s")

    def __init__(
        self, allowed: bool, limit: int, remaining: int, reset_s: float, retry_after_s: float
    ) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s  # until the tightest bucket is full again
        self.retry_after_s = retry_after_s  # until a refused call would pass; 0 when allowed

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_s={self.reset_s:.3f}, retry_after_s={self.retry_after_s:.3f})"
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The IETF draft's RateLimit-* fields (delta seconds, rounded up)."""
        return [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % math.ceil(self.reset_s)),
        ]


Bucket = tuple[str, Rate]


def _decide(
    tats: Sequence[float], buckets: Sequence[Bucket], now: float
) -> tuple[Decision, list[float]]:
    """The decision for buckets whose stored TATs are ``tats``, and their TATs after it.
    (On the predict path: kept to plain loops and floats.)"""
    new_tats: list[float] = []
    retry = 0.0
    for tat, (_, rate) in zip(tats, buckets, strict=True):
        new_tat = (tat if tat > now else now) + rate.interval_s
        wait = new_tat - rate.period_s - now
        if wait > retry:
            retry = wait
        new_tats.append(new_tat)
    allowed = retry <= 0
    # The headers describe the bucket with the least room left.
    best_remaining = -1
    best: tuple[int, float] = (0, 0.0)
    for i, (_, rate) in enumerate(buckets):
        tat = new_tats[i] if allowed else max(tats[i], now)
        ahead = tat - now
        remaining = int((rate.period_s - ahead) / rate.interval_s + 1e-9)
        if remaining < 0:
            remaining = 0
        if best_remaining < 0 or remaining < best_remaining:
            best_remaining, best = remaining, (rate.count, ahead)
    return Decision(allowed, best[0], best_remaining, best[1], retry), new_tats


class Limiter(Protocol):
    def hit(self, buckets: Sequence[Bucket]) -> Decision: ...

    async def ahit(self, buckets: Sequence[Bucket]) -> Decision: ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process, bounded: past ``max_buckets`` the full ones are dropped (a full
    bucket and a missing one mean the same)."""

    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max = max_buckets

    def hit(self, buckets: Sequence[Bucket]) -> Decision:
        # On the predict lane: the let-through case is written out in plain floats, the
        # refusal goes through _decide.
        now = time.monotonic()
        stored = self._tats
        with self._lock:
            news: list[float] = []
            for key, rate in buckets:
                tat = stored.get(key, 0.0)
                new = (tat if tat > now else now) + rate.interval_s
                if new - rate.period_s > now:  # this bucket is empty: refused
                    tats = [stored.get(k, 0.0) for k, _ in buckets]
                    return _decide(tats, buckets, now)[0]
                news.append(new)
            if len(stored) >= self._max:
                self._prune(now)
            # The headers describe the bucket with the least room left.
            least, limit, ahead = math.inf, 0, 0.0
            for (key, rate), new in zip(buckets, news, strict=True):
                stored[key] = new
                room = (rate.period_s - new + now) / rate.interval_s
                if room < least:
                    least, limit, ahead = room, rate.count, new - now
        remaining = int(least + 1e-9)
        return Decision(True, limit, remaining if remaining > 0 else 0, ahead, 0.0)

    async def ahit(self, buckets: Sequence[Bucket]) -> Decision:
        return self.hit(buckets)

    async def aclose(self) -> None:
        pass

    def _prune(self, now: float) -> None:
        full = [key for key, tat in self._tats.items() if tat <= now]
        for key in full:
            del self._tats[key]
        if len(self._tats) >= self._max:  # a flood of distinct keys: start over
            self._tats.clear()


# KEYS: the buckets; ARGV: interval and period of each, in KEYS' order. Returns
# {allowed, limit, remaining, reset, retry} with the floats as strings (Lua numbers would be
# truncated to integers on the way back).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = #KEYS
local tats, news = {}, {}
local retry = 0
for i = 1, n do
  local interval, period = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  news[i] = tat + interval
  local wait = news[i] - period - now
  if wait > retry then retry = wait end
end
local allowed = retry <= 0
local best_remaining, best_limit, best_reset = nil, 0, 0
for i = 1, n do
  local interval, period = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local tat = tats[i]
  if allowed then
    tat = news[i]
    redis.call('SET', KEYS[i], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1)
  end
  local remaining = math.floor((period - (tat - now)) / interval + 1e-9)
  if remaining < 0 then remaining = 0 end
  if best_remaining == nil or remaining < best_remaining then
    best_remaining, best_reset = remaining, tat - now
    best_limit = math.floor(period / interval + 0.5)
  end
end
return {allowed and 1 or 0, best_limit, best_remaining, string.format('%.6f', best_reset),
        string.format('%.6f', retry)}
"""


class RedisLimiter:
    """Buckets in Redis shared by every gateway; keys expire once their bucket is full.

    While Redis cannot be reached, calls are let through (and logged): a rate limit is a
    guard, and an outage of it must not take the registry and the predict lane down too.
    """

    def __init__(self, url: str, *, timeout_s: float, prefix: str = "aiaas:rl:") -> None:
        import redis

        self._url = url
        self._prefix = prefix
        self._options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }
        self._sync = redis.Redis.from_url(url, **self._options)
        self._script = self._sync.register_script(_SCRIPT)
        # An asyncio client belongs to the loop it first ran on: made lazily, per loop.
        self._async: Any = None
        self._ascript: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _args(self, buckets: Sequence[Bucket]) -> tuple[list[str], list[float]]:
        keys = [self._prefix + key for key, _ in buckets]
        argv: list[float] = []
        for _, rate in buckets:
            argv += [rate.interval_s, rate.period_s]
        return keys, argv

    @staticmethod
    def _decision(raw: Sequence[Any]) -> Decision:
        allowed, limit, remaining, reset, retry = raw
        return Decision(bool(int(allowed)), int(limit), int(remaining), float(reset), float(retry))

    def hit(self, buckets: Sequence[Bucket]) -> Decision:
        keys, argv = self._args(buckets)
        try:
            return self._decision(self._script(keys=keys, args=argv))
        except _redis_errors() as exc:
            return _let_through(buckets, exc)

    async def ahit(self, buckets: Sequence[Bucket]) -> Decision:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(self._url, **self._options)
            self._ascript = self._async.register_script(_SCRIPT)
            self._loop = loop
        keys, argv = self._args(buckets)
        try:
            return self._decision(await self._ascript(keys=keys, args=argv))
        except _redis_errors() as exc:
            return _let_through(buckets, exc)

    async def aclose(self) -> None:
        """Close the connections (from the loop the asyncio client ran on, at shutdown)."""
        if self._async is not None:
            await self._async.aclose()
            self._async = self._ascript = self._loop = None
        self._sync.close()


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def _let_through(buckets: Sequence[Bucket], exc: BaseException) -> Decision:
    log.warning("rate limits unavailable, letting the call through: %s", exc)
    rate = buckets[0][1]
    return Decision(True, rate.count, rate.count, 0.0, 0.0)
