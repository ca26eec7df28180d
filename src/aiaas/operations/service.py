"""Readiness: is every dependency this process needs reachable right now, and is the database's
schema the one this code is written for?

A check returns None when all is well, or a note worth reading that does not make the process
unready (its result is then ``"ok, <note>"``); it raises when the process must not get traffic.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from aiaas.config import Settings
from aiaas.db import CodeRevisions, Database, code_revisions

log = logging.getLogger(__name__)

Check = Callable[[], str | None]

OK = "ok"


class NotReady(Exception):
    """A dependency that answers, in a state this code cannot serve with: its message is the
    check's result as it stands (no exception name: nothing failed)."""


def readiness_checks(settings: Settings, database: Database) -> dict[str, Check]:
    checks: dict[str, Check] = {"database": database.ping}
    try:
        checks["schema"] = schema_check(database, code_revisions())
    except FileNotFoundError as exc:
        # An install without the source tree cannot migrate either; say so once, at start.
        log.warning("readiness does not check the database schema: %s", exc)
    if settings.broker_url:
        broker_url = settings.broker_url
        timeout = settings.readiness_timeout_s

        def broker() -> None:
            client = redis.Redis.from_url(
                broker_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()

        checks["broker"] = broker
    return checks


def schema_check(database: Database, code: CodeRevisions) -> Check:
    """Not ready while the database's schema is behind ``code``'s newest revision (new code
    started before its migration ran). Ahead of it, at a revision the code does not know, is
    ready: a newer release migrated first, and expand/contract migrations keep this code
    working on that schema."""
    needs = ", ".join(sorted(code.heads))

    def schema() -> str | None:
        current = database.schema_revisions()
        if current is None:
            raise NotReady(f"not migrated, code needs {needs}: run aiaas db upgrade")
        ahead = current - code.known
        if ahead:
            return f"ahead ({', '.join(sorted(ahead))})"
        if current != code.heads:
            at = ", ".join(sorted(current)) or "base"
            raise NotReady(f"at {at}, code needs {needs}: run aiaas db upgrade")
        return None

    return schema


def run_checks(checks: dict[str, Check], *, timeout_s: float) -> dict[str, str]:
    """Run every check concurrently; each answers "ok" (perhaps with a note: "ok, ...") or why
    the process is not ready, within the timeout."""
    results: dict[str, str] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(checks) or 1)
    try:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        for name, future in futures.items():
            try:
                note = future.result(timeout=timeout_s)
                results[name] = f"{OK}, {note}" if note else OK
            except concurrent.futures.TimeoutError:
                results[name] = f"no answer within {timeout_s:g}s"
            except NotReady as exc:
                results[name] = str(exc)
            except Exception as exc:  # any failure means "down"; say which kind
                results[name] = _describe(exc)
    finally:
        # A hung check must not hold the probe: leave its thread behind rather than wait.
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def not_ready(results: dict[str, str]) -> str | None:
    """Why the process is not ready, from ``run_checks``' results; None when it is."""
    down = {name: why for name, why in results.items() if not is_up(why)}
    if not down:
        return None
    return "Not ready: " + ", ".join(f"{name} is down ({why})" for name, why in down.items())


def is_up(result: str) -> bool:
    """Whether one of ``run_checks``' results lets the process take traffic."""
    return result == OK or result.startswith(f"{OK}, ")


def _describe(exc: Exception) -> str:
    first_line = next(iter(str(exc).splitlines()), "")[:200]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


class Readiness:
    """The dependencies' state for the probes (``/readyz``, ``/v2/health/ready``), checked at
    most once per ``ttl_s`` however many probes ask: they need no credential, and a check of a
    hung dependency leaves a thread behind, so a flood of probes must not mean a flood of
    checks. Concurrent probes wait for the one check in progress."""

    def __init__(self, settings: Settings, database: Database, *, ttl_s: float = 0.5) -> None:
        self._checks = readiness_checks(settings, database)
        self._timeout_s = settings.readiness_timeout_s
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._checked_at = -math.inf
        self._results: dict[str, str] = {}

    def results(self) -> dict[str, str]:
        """Each dependency's "ok" or why it is down (blocking: call it off the event loop)."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self._ttl_s:
                self._results = run_checks(self._checks, timeout_s=self._timeout_s)
                self._checked_at = time.monotonic()
            return dict(self._results)
