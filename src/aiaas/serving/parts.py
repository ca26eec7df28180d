"""What a batcher is given besides its size: how batches run and report."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

RunBatch = Callable[[np.ndarray], np.ndarray]
# A batch run that only waits (on remote workers): a coroutine on the loop, no thread.
AsyncRunBatch = Callable[[np.ndarray], Awaitable[np.ndarray]]
# The batch runs' types: one model's (``RunBatch``), or any model's in a pool (spec first).
Run = TypeVar("Run")
AsyncRun = TypeVar("AsyncRun")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchParts(Generic[Run, AsyncRun]):
    """How batches run and report, apart from their size: checked here, once, for the
    batcher or pool that takes them.

    ``run_batch`` runs on ``executor``'s threads; ``run_batch_async`` (instead of both) is a
    coroutine run on the loop, for batches that only wait on I/O. ``max_inflight`` batches
    may run at once: 1 for a local model, whose forward already uses the cores; more where
    batches only wait on remote workers. With ``timeout_s``, a request not answered that long
    after its arrival fails with ``BatchTimeout``. ``on_batch`` is called with each batch's
    rows, ``on_wait`` with each request's seconds in the queue, as its batch starts.

    ``run_inline`` (with ``run_batch``) is offered a lone request that finds the batcher idle,
    on the event loop itself: it runs the batch and returns its outputs, or returns None to
    decline, and the request takes the executor as usual. It is for forwards short enough
    that the thread hop (two wake-ups, tens of microseconds) is a large part of them; the
    caller decides what is short (see ``dispatch.inprocess``).
    """

    run_batch: Run | None = None
    run_inline: Callable[..., np.ndarray | None] | None = None
    executor: concurrent.futures.Executor | None = None
    run_batch_async: AsyncRun | None = None
    on_batch: Callable[[int], None] | None = None
    max_inflight: int = 1
    timeout_s: float | None = None
    on_wait: Callable[[float], None] | None = None

    def __post_init__(self) -> None:
        if (self.run_batch is None or self.executor is None) == (self.run_batch_async is None):
            raise ValueError("give run_batch and executor, or run_batch_async alone")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.run_inline is not None and self.run_batch is None:
            raise ValueError("run_inline goes with run_batch: it declines to the executor")


# One model's parts, as a ``Batcher`` takes them. Its ``run_inline`` returns None to decline.
ModelBatchParts = BatchParts[RunBatch, AsyncRunBatch]
RunInline = Callable[[np.ndarray], np.ndarray | None]
