"""Who is running, in the distributed mode: each gateway and worker process keeps a key of its
own in Redis, renewed every ``every_s`` and expiring ``ttl_s`` after the last renewal, so
that the processes alive (and when each last showed a sign of life) can be listed without
asking any of them. A process that dies, or hangs, drops out of the list within ``ttl_s``.

Beats are best effort: a broker outage only means the list is empty meanwhile, and nothing
waits on a beat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

log = logging.getLogger(__name__)

PREFIX = "aiaas:presence:"
Kind = Literal["gateway", "worker"]


@dataclass(frozen=True, slots=True)
class Seen:
    kind: str
    host: str
    pid: int
    started_at: float
    beat_at: float
    details: dict[str, Any]


class Presence:
    """This process's key; ``start`` renews it on a daemon thread until ``stop``."""

    def __init__(
        self,
        url: str,
        kind: Kind,
        *,
        details: dict[str, Any] | None = None,
        every_s: float = 10.0,
        ttl_s: float = 30.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._kind = kind
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._key = f"{PREFIX}{kind}:{self._host}:{self._pid}"
        self._details = dict(details or {})
        self._started_at = time.time()
        self._every_s = every_s
        self._ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Renew the key now; False when Redis did not take it."""
        value = {
            "kind": self._kind,
            "host": self._host,
            "pid": self._pid,
            "started_at": self._started_at,
            "beat_at": time.time(),
            "details": self._details,
        }
        try:
            self._client.set(self._key, json.dumps(value), px=int(self._ttl_s * 1000))
        except (redis.RedisError, OSError) as exc:
            log.debug("presence beat failed: %s", exc)
            return False
        return True

    def start(self) -> Presence:
        def run() -> None:
            while True:
                self.beat()
                if self._stop.wait(self._every_s):
                    return

        self._thread = threading.Thread(target=run, name=f"presence-{self._kind}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and take the key away: a process shut down cleanly is gone at once.
        (Called again, it does nothing.)"""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError, OSError):  # else it expires by itself
            self._client.delete(self._key)
        self._client.close()


def seen(url: str, *, timeout_s: float = 2.0, limit: int = 1000) -> list[Seen]:
    """The processes alive now, gateways first, each kind by host and pid; at most ``limit``
    (a bound on what one admin page reads)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        keys = []
        for key in client.scan_iter(match=f"{PREFIX}*", count=500):
            keys.append(key)
            if len(keys) >= limit:
                break
        values = client.mget(keys) if keys else []
    finally:
        client.close()
    found = []
    for raw in values:
        if raw is None:  # expired between the scan and the read
            continue
        item = json.loads(raw)
        found.append(
            Seen(
                kind=str(item["kind"]),
                host=str(item["host"]),
                pid=int(item["pid"]),
                started_at=float(item["started_at"]),
                beat_at=float(item["beat_at"]),
                details=dict(item.get("details") or {}),
            )
        )
    found.sort(key=lambda s: (s.kind != "gateway", s.host, s.pid))
    return found
