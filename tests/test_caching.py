"""The hot path's cache: single lookups under concurrency, stale answers while refreshing."""

from __future__ import annotations

import asyncio
import threading
import time

from aiaas.caching import RefreshingCache


def test_concurrent_misses_share_one_lookup() -> None:
    calls = 0
    gate = threading.Event()

    def load() -> str:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return "value"

    async def main() -> list[str]:
        cache: RefreshingCache[str, str] = RefreshingCache(ttl_s=60)
        waiters = [asyncio.create_task(cache.get("k", load)) for _ in range(20)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*waiters)

    assert asyncio.run(main()) == ["value"] * 20
    assert calls == 1


def test_stale_entries_are_served_while_one_refresh_runs() -> None:
    values = iter(["old", "new"])
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        return next(values)

    async def main() -> tuple[str, list[str], str]:
        cache: RefreshingCache[str, str] = RefreshingCache(ttl_s=0.05)
        first = await cache.get("k", load)
        await asyncio.sleep(0.07)  # stale, not yet expired (expiry is twice the TTL)
        during = await asyncio.gather(*(cache.get("k", load) for _ in range(10)))
        await asyncio.sleep(0.05)
        after = await cache.get("k", load)
        return first, during, after

    first, during, after = asyncio.run(main())
    assert first == "old"
    assert during == ["old"] * 10
    assert after == "new"
    assert calls == 2


def test_failures_are_not_cached_and_reach_every_waiter() -> None:
    attempts = 0

    def load() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            # A slow failure: the other lookups arrive while it runs, so all of them wait on
            # it and must all be given its error.
            time.sleep(0.02)
            raise LookupError("down")
        return "up"

    async def main() -> str:
        cache: RefreshingCache[str, str] = RefreshingCache(ttl_s=60)
        results = await asyncio.gather(
            *(cache.get("k", load) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, LookupError) for r in results)
        return await cache.get("k", load)

    assert asyncio.run(main()) == "up"
    assert attempts == 2


def test_forget_wins_over_a_lookup_that_started_before_it() -> None:
    gate = threading.Event()
    values = iter(["before", "after"])

    def load() -> str:
        value = next(values)
        if value == "before":
            gate.wait(5)
        return value

    async def main() -> str:
        cache: RefreshingCache[str, str] = RefreshingCache(ttl_s=60)
        pending = asyncio.create_task(cache.get("k", load))
        await asyncio.sleep(0.02)
        cache.forget(lambda key: key == "k")  # the data changed while "before" was read
        gate.set()
        assert await pending == "before"
        return await cache.get("k", load)

    assert asyncio.run(main()) == "after"


def test_size_is_bounded() -> None:
    async def main() -> list[int]:
        cache: RefreshingCache[int, int] = RefreshingCache(ttl_s=60, max_entries=3)
        sizes = []
        for i in range(10):
            assert await cache.get(i, lambda: i * 10) == i * 10  # noqa: B023 (awaited at once)
            sizes.append(len(cache._entries))
        return sizes

    sizes = asyncio.run(main())
    assert max(sizes) <= 3
    assert sizes[:3] == [1, 2, 3]
