"""An LRU of loaded runtimes under a byte budget, keyed by what they compute.

The key is ``ServingSpec.runtime_key`` (weights, architecture, config, task, labels, input
shape): versions that share a runtime compute the same outputs, whichever account owns them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from aiaas.serving._notify import call, notify
from aiaas.serving.runtime import ModelRuntime
from aiaas.serving.spec import ServingSpec


class HasNbytes(Protocol):
    """Anything the cache can hold: it only needs to know how many bytes it pins."""

    @property
    def nbytes(self) -> int: ...


R = TypeVar("R", bound=HasNbytes)


class _Load(Generic[R]):
    """A load in progress that other callers for the same key wait on."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: R | None = None
        self.error: BaseException | None = None

    def wait(self) -> R:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class LoadingCache(Generic[R]):
    """Thread-safe, lazily loading LRU of anything with ``nbytes``.

    ``on_miss`` is called for a ``get`` that runs the loader, ``on_hit`` for one that does
    not (including callers that wait on another caller's load); ``on_bytes`` receives the
    new total after every change.
    """

    def __init__(
        self,
        budget_bytes: int,
        loader: Callable[[ServingSpec], R],
        *,
        on_hit: Callable[[], None] | None = None,
        on_miss: Callable[[], None] | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self._budget = budget_bytes
        self._loader = loader
        self._on_hit = on_hit
        self._on_miss = on_miss
        self._on_bytes = on_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, R] = OrderedDict()
        self._loading: dict[str, _Load[R]] = {}
        self._total = 0

    @property
    def budget_bytes(self) -> int:
        return self._budget

    @property
    def total_bytes(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, spec: ServingSpec) -> R:
        """The runtime for ``spec``, loading it on first use.

        Concurrent callers for one key share a single load; if it fails, all of them see
        its exception and nothing is cached, so the next ``get`` tries again.
        """
        key = spec.runtime_key
        mine: _Load[R] | None = None
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
            waiting = self._loading.get(key)
            if cached is None and waiting is None:
                mine = self._loading[key] = _Load()
        if mine is not None:
            return self._load(spec, mine)
        call(self._on_hit)
        if cached is not None:
            return cached
        assert waiting is not None
        return waiting.wait()

    def if_loaded(self, spec: ServingSpec) -> R | None:
        """The runtime for ``spec`` if it is loaded, used as ``get`` uses it (most recently
        used now, a hit counted); None, with nothing counted, rather than loading it."""
        key = spec.runtime_key
        with self._lock:
            cached = self._entries.get(key)
            if cached is None:
                return None
            self._entries.move_to_end(key)
        call(self._on_hit)
        return cached

    def _load(self, spec: ServingSpec, pending: _Load[R]) -> R:
        call(self._on_miss)
        # The loader runs outside the lock: it takes seconds, and other keys must stay
        # servable meanwhile.
        try:
            runtime = self._loader(spec)
        except BaseException as exc:
            with self._lock:
                del self._loading[spec.runtime_key]
            pending.error = exc
            pending.done.set()
            raise
        with self._lock:
            del self._loading[spec.runtime_key]
            self._insert(spec.runtime_key, runtime)
            total = self._total
        pending.value = runtime
        pending.done.set()
        notify(self._on_bytes, total)
        return runtime

    def _insert(self, key: str, runtime: R) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._total -= old.nbytes
        self._entries[key] = runtime
        self._total += runtime.nbytes
        # The newest entry is kept even when it alone is over budget: refusing it would
        # make that model unservable, and the next load evicts it anyway.
        while self._total > self._budget and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._total -= evicted.nbytes

    def evict(self, key: str) -> bool:
        """Drop ``key`` if cached; a load of it in progress still completes and is cached."""
        with self._lock:
            runtime = self._entries.pop(key, None)
            if runtime is None:
                return False
            self._total -= runtime.nbytes
            total = self._total
        notify(self._on_bytes, total)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0
        notify(self._on_bytes, 0)


class RuntimeCache(LoadingCache[ModelRuntime]):
    """The cache of loaded model runtimes, keyed by ``ServingSpec.runtime_key``."""
