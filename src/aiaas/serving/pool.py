"""The batchers of a process: one ``Batcher`` per model version, made on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

import numpy as np

from aiaas.serving.batching import Batcher
from aiaas.serving.parts import BatchParts, ModelBatchParts
from aiaas.serving.spec import ServingSpec

# Any model's batch run: the version's spec, then the batch. (A ``run_inline`` of the pool may
# return None to decline.)
PoolRunBatch = Callable[[ServingSpec, np.ndarray], np.ndarray]
PoolAsyncRunBatch = Callable[[ServingSpec, np.ndarray], Awaitable[np.ndarray]]
PoolBatchParts = BatchParts[PoolRunBatch, PoolAsyncRunBatch]


class BatcherPool:
    """One ``Batcher`` per model version (``spec.key``), its knobs taken from the spec.

    ``parts.run_batch(spec, batch)`` runs one batch of ``spec``'s model; looking the runtime
    up there on every call (rather than capturing one) lets the runtime cache evict it.
    """

    def __init__(self, parts: PoolBatchParts) -> None:
        self._parts = parts
        self._batchers: dict[str, Batcher] = {}

    def __len__(self) -> int:
        return len(self._batchers)

    def get(self, spec: ServingSpec) -> Batcher:
        batcher = self._batchers.get(spec.key)
        if batcher is None:
            batcher = self._batchers[spec.key] = Batcher(
                self._bound(spec),
                max_batch_size=spec.max_batch_size,
                max_delay_ms=spec.max_delay_ms,
            )
        return batcher

    def _bound(self, spec: ServingSpec) -> ModelBatchParts:
        """The pool's parts with the batch runs bound to ``spec``'s model."""
        parts = self._parts
        run, run_async, inline = parts.run_batch, parts.run_batch_async, parts.run_inline
        return BatchParts(
            run_batch=partial(run, spec) if run is not None else None,
            run_inline=partial(inline, spec) if inline is not None else None,
            executor=parts.executor,
            run_batch_async=partial(run_async, spec) if run_async is not None else None,
            on_batch=parts.on_batch,
            max_inflight=parts.max_inflight,
            timeout_s=parts.timeout_s,
            on_wait=parts.on_wait,
        )

    async def close(self, key: str) -> None:
        """Drain and forget one version's batcher."""
        batcher = self._batchers.pop(key, None)
        if batcher is not None:
            await batcher.close()

    async def close_all(self) -> None:
        batchers, self._batchers = list(self._batchers.values()), {}
        await asyncio.gather(*(batcher.close() for batcher in batchers))
