from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from aiaas.serving import ServingSpec
from aiaas.serving.cache import LoadingCache, RuntimeCache
from tests.serving.helpers import load_runtime, make_spec


@dataclass
class Stub:
    key: str
    nbytes: int


class Loader:
    """A fake loader: sizes per key, a record of what it loaded, optional failures."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.loaded: list[str] = []
        self.fail: set[str] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, spec: ServingSpec) -> Stub:
        with self.lock:
            self.loaded.append(spec.weights)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if spec.weights in self.fail:
            raise OSError(f"cannot load {spec.weights}")
        return Stub(spec.weights, self.sizes[spec.weights])


def spec(key: str) -> ServingSpec:
    return make_spec("mlp", weights=key)


def _wait_for(condition: threading.Condition, predicate: Callable[[], bool]) -> None:
    with condition:
        assert condition.wait_for(predicate, timeout=10)


def test_lru_eviction_under_the_budget() -> None:
    totals: list[int] = []
    loader = Loader({"a": 40, "b": 40, "c": 40})
    cache = LoadingCache(100, loader, on_bytes=totals.append)
    cache.get(spec("a"))
    cache.get(spec("b"))
    cache.get(spec("a"))  # a is now the most recently used
    cache.get(spec("c"))
    assert spec("b").runtime_key not in cache
    assert spec("a").runtime_key in cache
    assert spec("c").runtime_key in cache
    assert len(cache) == 2
    assert cache.total_bytes == 80
    assert totals == [40, 80, 80]
    assert loader.loaded == ["a", "b", "c"]
    cache.get(spec("b"))
    assert loader.loaded == ["a", "b", "c", "b"]
    assert spec("a").runtime_key not in cache


def test_hits_and_misses_are_counted() -> None:
    counts = {"hit": 0, "miss": 0}

    def hit() -> None:
        counts["hit"] += 1

    def miss() -> None:
        counts["miss"] += 1

    cache = LoadingCache(100, Loader({"a": 1}), on_hit=hit, on_miss=miss)
    first = cache.get(spec("a"))
    assert cache.get(spec("a")) is first
    assert cache.get(spec("a")) is first
    assert counts == {"hit": 2, "miss": 1}


def test_a_runtime_used_if_loaded_is_recent_and_counted() -> None:
    """A model served on the event loop (if_loaded) is as recently used as one the forward
    thread got: the next load evicts the other one."""
    hits: list[int] = []
    loader = Loader({"a": 40, "b": 40, "c": 40})
    cache = LoadingCache(100, loader, on_hit=lambda: hits.append(1))
    cache.get(spec("a"))
    cache.get(spec("b"))
    assert cache.if_loaded(spec("a")) is not None
    assert cache.if_loaded(spec("c")) is None  # never loads
    assert loader.loaded == ["a", "b"]
    assert len(hits) == 1
    cache.get(spec("c"))
    assert spec("b").runtime_key not in cache
    assert spec("a").runtime_key in cache


def test_an_entry_over_budget_alone_is_kept_until_the_next_load() -> None:
    cache = LoadingCache(100, Loader({"big": 150, "a": 10, "b": 10}))
    cache.get(spec("a"))
    assert cache.get(spec("big")).nbytes == 150
    assert len(cache) == 1
    assert cache.total_bytes == 150
    cache.get(spec("b"))
    assert spec("big").runtime_key not in cache
    assert cache.total_bytes == 10


def test_evict_and_clear() -> None:
    totals: list[int] = []
    cache = LoadingCache(100, Loader({"a": 30, "b": 20}), on_bytes=totals.append)
    cache.get(spec("a"))
    cache.get(spec("b"))
    assert cache.evict(spec("a").runtime_key)
    assert not cache.evict(spec("a").runtime_key)
    assert cache.total_bytes == 20
    cache.clear()
    assert len(cache) == 0
    assert cache.total_bytes == 0
    assert totals == [30, 50, 20, 0]


def test_concurrent_gets_load_once() -> None:
    loader = Loader({"a": 10})
    loader.gate = threading.Event()
    waiting = threading.Condition()
    hits = [0]

    def hit() -> None:
        with waiting:
            hits[0] += 1
            waiting.notify_all()

    cache = LoadingCache(100, loader, on_hit=hit)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, spec("a")) for _ in range(8)]
        # The seven that did not load report a hit just before they wait on the load.
        _wait_for(waiting, lambda: hits[0] == 7)
        loader.gate.set()
        results = [f.result(timeout=10) for f in futures]
    assert loader.loaded == ["a"]
    assert all(r is results[0] for r in results)


def test_a_failed_load_fails_every_waiter_and_is_not_cached() -> None:
    loader = Loader({"a": 10})
    loader.fail.add("a")
    loader.gate = threading.Event()
    waiting = threading.Condition()
    hits = [0]

    def hit() -> None:
        with waiting:
            hits[0] += 1
            waiting.notify_all()

    cache = LoadingCache(100, loader, on_hit=hit)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, spec("a")) for _ in range(8)]
        _wait_for(waiting, lambda: hits[0] == 7)
        loader.gate.set()
        for future in futures:
            with pytest.raises(OSError, match="cannot load a"):
                future.result(timeout=10)
    assert loader.loaded == ["a"]
    assert len(cache) == 0
    assert cache.total_bytes == 0
    loader.fail.clear()
    assert cache.get(spec("a")).nbytes == 10
    assert loader.loaded == ["a", "a"]


def test_other_keys_are_served_while_one_loads() -> None:
    loader = Loader({"slow": 10, "fast": 10})
    cache = LoadingCache(100, loader)
    cache.get(spec("fast"))
    loader.gate = threading.Event()
    loader.entered.clear()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(cache.get, spec("slow"))
        assert loader.entered.wait(10)
        # A cached key needs neither the loader nor the in-progress load.
        assert cache.get(spec("fast")).key == "fast"
        loader.gate.set()
        assert slow.result(timeout=10).key == "slow"


def test_a_broken_metrics_callback_does_not_break_get(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("metrics are down")

    cache = LoadingCache(100, Loader({"a": 1}), on_miss=broken, on_hit=broken)
    assert cache.get(spec("a")).nbytes == 1
    assert cache.get(spec("a")).nbytes == 1
    assert "metrics callback" in caplog.text


def test_runtime_cache_holds_model_runtimes() -> None:
    specs = [make_spec("mlp", weights="m1"), make_spec("cnn", weights="c1")]
    runtimes = {s.weights: load_runtime(s)[0] for s in specs}
    cache = RuntimeCache(runtimes["m1"].nbytes, lambda s: runtimes[s.weights])
    assert cache.get(specs[0]) is runtimes["m1"]
    assert cache.get(specs[1]) is runtimes["c1"]
    assert len(cache) == 1
    assert cache.total_bytes == runtimes["c1"].nbytes


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        LoadingCache(-1, Loader({}))
