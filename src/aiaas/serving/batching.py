"""Dynamic batching of prediction requests for one model version, on asyncio.

Greedy by default: a request that finds its model idle is sent to the executor at once,
so a lone client pays only a future and a thread hop. Requests that arrive while a batch
is computing queue up, and the next batch takes all of them (up to ``max_batch_size``
rows) as soon as the running one finishes: the batch size follows the load by itself.

The batcher is driven by callbacks on the event loop (an arrival, a finished batch, the
``max_delay_ms`` timer) rather than a collector task polling a queue, which saves a loop
iteration per batch and leaves no task to leak; all of its state lives on one loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import deque
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from aiaas.serving._notify import notify
from aiaas.serving.executor import call_in_thread
from aiaas.serving.executor import make_executor as make_executor
from aiaas.serving.parts import AsyncRunBatch, RunBatch, RunInline
from aiaas.serving.parts import BatchParts as BatchParts
from aiaas.serving.parts import ModelBatchParts as ModelBatchParts
from aiaas.serving.stacking import run_split, run_split_async, split_outputs

# While a coroutine batch run (``run_batch_async``) runs: the ``tag`` of each request in the
# batch, in order. A distributed dispatcher sends them with the batch (request ids, traces).
BATCH_TAGS: ContextVar[tuple[object, ...]] = ContextVar("aiaas_batch_tags", default=())


class BatcherClosed(RuntimeError):
    """``submit`` was called on a batcher that is closing or closed."""


class BatchTimeout(TimeoutError):
    """No answer came within the batcher's ``timeout_s`` of the request's arrival."""


@dataclass(slots=True)
class _Request:
    inputs: np.ndarray
    future: asyncio.Future[np.ndarray]
    arrived: float
    tag: object = None
    group: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        # Only requests with equal trailing shapes (e.g. one sequence length) can share
        # a forward pass.
        self.group = self.inputs.shape[1:]


def _rows(batch: Sequence[_Request]) -> int:
    # A lone request (the idle path) skips the generator.
    if len(batch) == 1:
        return len(batch[0].inputs)
    return sum(len(request.inputs) for request in batch)


def _run_live(
    run_batch: RunBatch, batch: Sequence[_Request], timeout: float | None
) -> list[np.ndarray | None]:
    """Run the requests still waiting for an answer; None for the others.

    Batches of several models share the torch threads: one may wait behind another's long
    forward past its requests' deadlines. Those requests have been answered 504 already (or
    are about to be), so they are dropped here, right before the forward, rather than run
    for nobody; when none is left the forward does not run at all. ``arrived`` is on the
    loop's clock, which is ``time.monotonic``'s.
    """
    now = time.monotonic()
    live = [
        i
        for i, request in enumerate(batch)
        if not request.future.done() and (timeout is None or request.arrived + timeout > now)
    ]
    if len(live) == len(batch):
        return list(run_split(run_batch, [request.inputs for request in batch]))
    answers: list[np.ndarray | None] = [None] * len(batch)
    if live:
        outputs = run_split(run_batch, [batch[i].inputs for i in live])
        for i, output in zip(live, outputs, strict=True):
            answers[i] = output
    return answers


class Batcher:
    """Batches ``submit`` calls into runs of ``parts``' batch function for one model.

    Use it from one event loop at a time. ``max_delay_ms > 0`` lets a batch that is not
    full wait that long (from its oldest request's arrival) for more rows; 0 never waits.

    A request past the parts' ``timeout_s`` fails wherever it is (queued or in a batch that
    has not come back); its batch still runs for the others. One timer serves all of them:
    requests arrive in deadline order, so it only ever needs the oldest unanswered one. (A
    timeout per request, as ``asyncio.timeout`` sets, cost a sixteenth of a small request's
    time on the gateway.)
    """

    def __init__(self, parts: ModelBatchParts, *, max_batch_size: int, max_delay_ms: float) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not max_delay_ms >= 0:
            raise ValueError(f"max_delay_ms must be >= 0, got {max_delay_ms}")
        # Copied out of ``parts``: per-request code reads its own attributes, no hop further.
        self._run_batch = parts.run_batch
        self._run_inline: RunInline | None = parts.run_inline
        self._run_batch_async = parts.run_batch_async
        self._max_rows = max_batch_size
        self._delay = max_delay_ms / 1000
        self._executor = parts.executor
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_batch = parts.on_batch
        self._on_wait = parts.on_wait
        self._max_inflight = parts.max_inflight
        self._timeout = parts.timeout_s
        # Loop-bound state is created by the first submit, inside the running loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Request] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # Every request not yet answered, oldest first (only kept with a timeout).
        self._unanswered: deque[_Request] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._inflight = 0
        self._closed = False
        # A lone request waits one loop turn for company before it may run inline.
        self._deciding = False

    @property
    def queued(self) -> int:
        """Requests waiting for a batch, not counting those computing."""
        return len(self._queue)

    @property
    def inflight(self) -> int:
        """Batches computing (or about to hand their results over)."""
        return self._inflight

    def submit(self, inputs: np.ndarray, tag: object = None) -> asyncio.Future[np.ndarray]:
        """Queue ``inputs`` (batch-first, at least one row); the future gets its output rows.
        ``tag`` goes with the request into ``BATCH_TAGS``.

        A plain function returning the future, not a coroutine: every coroutine between the
        event loop and the request's future is one more frame to suspend and resume on each
        wake-up of the request's task.
        """
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        if inputs.ndim < 1 or len(inputs) < 1:
            raise ValueError(f"inputs must be batch-first with at least one row: {inputs.shape}")
        loop = self._bind()
        request = _Request(inputs, loop.create_future(), loop.time(), tag)
        if self._timeout is not None:
            self._unanswered.append(request)
            if self._deadline_timer is None:
                self._deadline_timer = loop.call_at(request.arrived + self._timeout, self._expire)
        if self._inflight < self._max_inflight and not self._queue and self._delay == 0:
            if self._run_inline is not None:
                # Decided one loop turn later: requests the same read woke up queue behind
                # this one meanwhile, and then all of them go to the executor as one batch.
                self._queue.append(request)
                self._deciding = True
                loop.call_soon(self._inline_or_dispatch)
            else:
                # The idle fast path: straight to the executor, no queue.
                self._launch([request])
        else:
            self._queue.append(request)
            if not self._deciding:  # else the pending decision takes this one along
                self._dispatch()
        # A cancelled caller only cancels its own future: the batch it is part of still
        # runs for the others, and _finish skips futures that are already done.
        return request.future

    def _inline_or_dispatch(self) -> None:
        """Run a request that is still alone in an idle batcher inline, if ``run_inline``
        takes it; anything else goes the usual way."""
        self._deciding = False
        queue = self._queue
        if len(queue) == 1 and self._inflight == 0 and not self._closed:
            request = queue[0]
            if not request.future.done() and self._inline(request):
                queue.popleft()
                unanswered = self._unanswered
                while unanswered and unanswered[0].future.done():
                    unanswered.popleft()
                return
        self._dispatch()

    def _inline(self, request: _Request) -> bool:
        """Answer ``request`` here, on the loop, if ``run_inline`` takes it."""
        assert self._run_inline is not None
        try:
            outputs = self._run_inline(request.inputs)
        except Exception as exc:
            request.future.set_exception(exc)
        else:
            if outputs is None:
                return False
            try:
                (answer,) = split_outputs([request.inputs], request.inputs, outputs)
            except RuntimeError as exc:
                request.future.set_exception(exc)
            else:
                request.future.set_result(answer)
        notify(self._on_batch, len(request.inputs))
        notify(self._on_wait, 0.0)
        return True

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        old = self._loop
        if old is not None and not old.is_closed() and (self._inflight or self._queue):
            raise RuntimeError("the batcher is in use on another event loop")
        # A closed loop's batch will never report back: start afresh on this one.
        self._loop, self._queue, self._inflight = loop, deque(), 0
        self._timer = self._drained = self._deadline_timer = None
        self._unanswered = deque()
        self._deciding = False
        return loop

    def _expire(self) -> None:
        """Fail the requests past their deadline; set the timer for the next one."""
        assert self._loop is not None
        assert self._timeout is not None
        self._deadline_timer = None
        now, unanswered = self._loop.time(), self._unanswered
        while unanswered:
            head = unanswered[0]
            if not head.future.done():
                if head.arrived + self._timeout > now:
                    self._deadline_timer = self._loop.call_at(
                        head.arrived + self._timeout, self._expire
                    )
                    return
                head.future.set_exception(BatchTimeout(f"no answer within {self._timeout:g}s"))
            unanswered.popleft()

    def _dispatch(self) -> None:
        """Start batches while there is room for one and one is due."""
        loop = self._loop
        while loop is not None and self._inflight < self._max_inflight:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()
            if not self._queue:
                self._cancel_timer()
                if self._inflight == 0 and self._drained and not self._drained.done():
                    self._drained.set_result(None)
                return
            if self._delay > 0 and not self._closed and not self._head_group_full():
                deadline = self._queue[0].arrived + self._delay
                if loop.time() < deadline:
                    if self._timer is None:
                        self._timer = loop.call_at(deadline, self._on_timer)
                    return
            self._cancel_timer()
            self._launch(self._take_batch())

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_group_full(self) -> bool:
        group, rows = self._queue[0].group, 0
        for request in self._queue:
            if request.group == group and not request.future.done():
                rows += len(request.inputs)
                if rows >= self._max_rows:
                    return True
        return False

    def _take_batch(self) -> list[_Request]:
        """The oldest request plus every later one of its shape group that still fits.

        A request over ``max_batch_size`` rows on its own is never split: it runs alone.
        """
        head = self._queue.popleft()
        batch, rows, rest = [head], len(head.inputs), deque[_Request]()
        for request in self._queue:
            if request.future.done():
                continue
            size = len(request.inputs)
            if request.group == head.group and rows + size <= self._max_rows:
                batch.append(request)
                rows += size
            else:
                rest.append(request)
        self._queue = rest
        return batch

    def _launch(self, batch: list[_Request]) -> None:
        loop = self._loop
        assert loop is not None
        self._inflight += 1
        notify(self._on_batch, _rows(batch))
        if self._on_wait is not None:
            now = loop.time()
            for request in batch:
                notify(self._on_wait, now - request.arrived)
        if self._run_batch_async is not None:
            task = loop.create_task(self._run_on_loop(self._run_batch_async, batch))
            # The loop keeps only weak references to tasks.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        assert self._executor is not None
        assert self._run_batch is not None

        def deliver(outputs: list[np.ndarray] | None, error: BaseException | None) -> None:
            if isinstance(error, concurrent.futures.CancelledError):
                error = BatcherClosed("the executor shut down before the batch ran")
            try:
                loop.call_soon_threadsafe(self._finish, batch, outputs, error)
            except RuntimeError:
                # A closed loop has nobody left waiting for these results. (A try costs
                # nothing on the way through; contextlib.suppress is a call per batch.)
                return

        try:
            call_in_thread(
                self._executor,
                partial(_run_live, self._run_batch, batch, self._timeout),
                deliver,
            )
        except RuntimeError as exc:
            # The executor is shut down: fail this batch; the rest follow the same way.
            self._finish(batch, None, exc)

    async def _run_on_loop(self, run: AsyncRunBatch, batch: list[_Request]) -> None:
        # This task's own context: the tags are seen by this run alone.
        BATCH_TAGS.set(tuple(request.tag for request in batch))
        try:
            outputs = await run_split_async(run, [r.inputs for r in batch])
        except Exception as exc:
            self._finish(batch, None, exc)
        except asyncio.CancelledError:
            self._finish(batch, None, BatcherClosed("the batch was cancelled"))
            raise
        else:
            self._finish(batch, outputs, None)

    def _finish(
        self,
        batch: list[_Request],
        outputs: Sequence[np.ndarray | None] | None,
        error: BaseException | None,
    ) -> None:
        for i, request in enumerate(batch):
            if request.future.done():
                continue
            answer = outputs[i] if outputs is not None else None
            if answer is not None:
                request.future.set_result(answer)
            elif outputs is not None:  # dropped before the forward: its deadline passed
                request.future.set_exception(BatchTimeout(f"no answer within {self._timeout:g}s"))
            else:
                request.future.set_exception(error or RuntimeError("the batch failed"))
        # Answers come mostly in arrival order, so this keeps the deque short.
        unanswered = self._unanswered
        while unanswered and unanswered[0].future.done():
            unanswered.popleft()
        # Keep the slot one more loop iteration: the callers woken above run first, and
        # what they submit straight away joins the next batch. Dispatching right here
        # would send the few requests already queued alone, and batches would alternate
        # between tiny and large under steady load (measured: mean 16 instead of 32 rows
        # at 32 clients).
        assert self._loop is not None
        self._loop.call_soon(self._release)

    def _release(self) -> None:
        self._inflight -= 1
        self._dispatch()

    async def close(self) -> None:
        """Refuse new requests, run the queued ones (without waiting for a fuller batch),
        and return once the last batch has finished."""
        self._closed = True
        if self._loop is None or self._loop.is_closed():
            return
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        self._dispatch()
        if self._inflight or self._queue:
            await asyncio.shield(self._drained)
        if self._deadline_timer is not None and not self._unanswered:
            self._deadline_timer.cancel()
            self._deadline_timer = None
