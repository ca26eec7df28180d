"""Back-off after failed sign-ins: per email and per client address.

After ``threshold`` failures in a row for one email (four times as many for one address:
failed logins and failed sign-ups), each further attempt must wait: 1 s, then twice as long after
every further failure, up to 15 minutes; answered 429 with ``Retry-After``. A success clears
the email's count. Only failures count: many accounts may be created from one address.

The check runs before the password is verified, so an attacker learns nothing from it that
a wrong password would not tell; the password check itself does the same work for unknown
emails (``security.verify_password``). Counts live in this process (embedded mode) or in Redis
(distributed: every gateway sees every failure); they expire after a quiet day.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from typing import Protocol

from aiaas.errors import RateLimited

log = logging.getLogger(__name__)

MAX_WAIT_S = 900.0
FORGET_AFTER_S = 86400.0


def wait_after(failures: int, threshold: int) -> float:
    """Seconds an attempt must wait after this many failures in a row."""
    if failures < threshold:
        return 0.0
    return min(MAX_WAIT_S, 2.0 ** (failures - threshold))


class FailureStore(Protocol):
    def get(self, key: str) -> tuple[int, float]: ...  # (failures, time of the last one)

    def fail(self, key: str) -> None: ...

    def clear(self, key: str) -> None: ...

    def close(self) -> None: ...


class MemoryFailures:
    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._max = max_keys

    def get(self, key: str) -> tuple[int, float]:
        with self._lock:
            count, last = self._counts.get(key, (0, 0.0))
        if count and time.time() - last > FORGET_AFTER_S:
            return 0, 0.0
        return count, last

    def fail(self, key: str) -> None:
        with self._lock:
            if len(self._counts) >= self._max:
                self._counts.clear()  # a flood of distinct keys: bound the memory
            count, _ = self._counts.get(key, (0, 0.0))
            self._counts[key] = (count + 1, time.time())

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def close(self) -> None:
        pass


class RedisFailures:
    """Counts in Redis. While Redis cannot be reached, sign-ins go on unthrottled (logged):
    the password check still stands, and an outage must not lock everyone out."""

    def __init__(self, url: str, *, timeout_s: float, prefix: str = "aiaas:fail:") -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._errors = redis.RedisError

    def get(self, key: str) -> tuple[int, float]:
        try:
            raw = self._redis.hmget(self._prefix + key, ["n", "t"])
        except (self._errors, OSError) as exc:
            log.warning("sign-in throttle unavailable: %s", exc)
            return 0, 0.0
        if raw[0] is None:
            return 0, 0.0
        return int(raw[0]), float(raw[1] or 0.0)

    def fail(self, key: str) -> None:
        name = self._prefix + key
        pipe = self._redis.pipeline()
        pipe.hincrby(name, "n", 1)
        pipe.hset(name, "t", repr(time.time()))
        pipe.expire(name, int(FORGET_AFTER_S))
        try:
            pipe.execute()
        except (self._errors, OSError) as exc:
            log.warning("sign-in throttle unavailable: %s", exc)

    def clear(self, key: str) -> None:
        try:
            self._redis.delete(self._prefix + key)
        except (self._errors, OSError) as exc:
            log.warning("sign-in throttle unavailable: %s", exc)

    def close(self) -> None:
        self._redis.close()


class SignInThrottle:
    """Email counts start waiting after ``threshold`` failures; an address, which many people
    may share (an office, a NAT), after ``ADDRESS_FACTOR`` times as many."""

    ADDRESS_FACTOR = 4

    def __init__(self, store: FailureStore, *, threshold: int) -> None:
        self.store = store
        self.threshold = threshold

    def _keys(self, email: str | None, address: str) -> list[tuple[str, int]]:
        keys = [(f"addr:{address}", self.threshold * self.ADDRESS_FACTOR)]
        if email is not None:
            keys.insert(0, (f"email:{email}", self.threshold))
        return keys

    def check(self, *, email: str | None, address: str) -> None:
        """Raise RateLimited while the email or the address must still wait."""
        now = time.time()
        for key, threshold in self._keys(email, address):
            failures, last = self.store.get(key)
            wait = last + wait_after(failures, threshold) - now
            if wait > 0:
                raise RateLimited(
                    f"Too many failed attempts; retry in {math.ceil(wait)} s.",
                    retry_after_s=wait,
                )

    def failed(self, *, email: str | None, address: str) -> None:
        for key, _ in self._keys(email, address):
            self.store.fail(key)

    def succeeded(self, *, email: str) -> None:
        self.store.clear(f"email:{email}")

    @contextlib.contextmanager
    def attempt(
        self, *, email: str | None, address: str | None, failure: type[Exception]
    ) -> Iterator[None]:
        """Around a sign-in (``email``) or a sign-up (None): refuse while it must wait, count
        a ``failure`` raised inside, and clear the email's count after a success."""
        where = address or "unknown"
        self.check(email=email, address=where)
        try:
            yield
        except failure:
            self.failed(email=email, address=where)
            raise
        if email is not None:
            self.succeeded(email=email)
