"""Processes announce themselves in Redis with a key that expires unless renewed: a dead or
hung process drops out of the list by itself, one that stops cleanly at once."""

from __future__ import annotations

import os
import time

from aiaas.presence import Presence, seen


def mine(url: str) -> list[str]:
    return [s.kind for s in seen(url) if s.pid == os.getpid()]


def test_a_process_is_seen_while_it_renews_its_key(redis_url: str) -> None:
    silent = Presence(redis_url, "worker", ttl_s=0.3)
    assert silent.beat()
    assert mine(redis_url) == ["worker"]
    time.sleep(0.5)  # no renewal: as a hung or killed process
    assert mine(redis_url) == []

    alive = Presence(redis_url, "gateway", every_s=0.1, ttl_s=0.3).start()
    time.sleep(0.6)
    assert mine(redis_url) == ["gateway"]
    alive.stop()
    assert mine(redis_url) == []


def test_an_unreachable_broker_is_a_failed_beat_not_an_error() -> None:
    assert not Presence("redis://127.0.0.1:9/0", "worker", timeout_s=0.2).beat()
