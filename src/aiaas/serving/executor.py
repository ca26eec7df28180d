"""The threads that run forward passes, sized together with torch's own threads."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from aiaas.serving.mode import serving_mode

log = logging.getLogger(__name__)
T = TypeVar("T")
# Called on the thread that ran the call: (result, None) or (None, the exception raised).
Deliver = Callable[[Any, BaseException | None], None]


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity mask (where the OS has one), capped by its
    container's CPU quota. A pod limited to 2 CPUs on a 64-core node sees 64 cores; torch
    running 64 threads there spends its quota on contention."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cpu_quota(cgroup)
    found = cpus or 1
    return max(1, min(found, math.ceil(quota))) if quota is not None else found


def cpu_quota(cgroup: Path) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2's ``cpu.max``, else v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when unlimited or not found."""
    try:
        fields = (cgroup / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def use_batch_scheduling() -> bool:
    """Put the calling thread, and every thread it starts from now on, under Linux's
    ``SCHED_BATCH`` policy; False where the OS has no such policy or refuses it.

    The event loop and the torch thread hand each request over twice (there and back).
    Under the default policy the woken thread preempts the waker, finds the GIL still held
    and blocks again: three context switches per hand-over where one would do. Batch
    threads are never preempted by a wake-up, only by the scheduler tick, so each side runs
    until it waits and the hand-over costs one switch. Measured with the server on one
    core (docs/performance.md): 2.9 involuntary switches per request fell to 0.03, and a
    small CNN at one connection went from 0.74x to 0.95x of an inline endpoint's req/s.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


class ForwardThreads(concurrent.futures.Executor):
    """A fixed set of threads fed from one queue, with a lean way in: ``call``.

    The threads run everything in ``mode.serving_mode`` (inference mode): they are for
    forward passes, not for anything that needs autograd.

    A ``ThreadPoolExecutor`` round trip wraps each call in a Future guarded by a Condition
    and, once the call returns, releases a Python-level Semaphore: several lock operations
    on the forward thread while the event loop, already woken by the result, waits for the
    GIL. At one request at a time on a small model that was about a tenth of the request's
    time on the gateway (docs/performance.md). ``call`` hands the result to a callback and
    goes straight back to the C-level queue. ``submit`` keeps the ``Executor`` interface for
    everything else.
    """

    _STOP = object()

    def __init__(self, threads: int = 1, *, torch_threads: int | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._size = threads
        self._torch_threads = torch_threads
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        # Calls queued or running; written under the lock.
        self._pending = 0

    @property
    def idle(self) -> bool:
        """No call queued or running (a hint: it may change as soon as it is read)."""
        return self._pending == 0

    def call(self, fn: Callable[[], Any], deliver: Deliver) -> None:
        """Run ``fn()`` on a forward thread, then ``deliver`` its result there.

        ``RuntimeError`` once shut down. Calls cancelled by ``shutdown(cancel_futures=True)``
        are delivered ``concurrent.futures.CancelledError``.
        """
        # Under the lock, so that no call lands behind the stop markers and is never run.
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            while len(self._threads) < self._size:
                self._start_thread()
            self._pending += 1
            self._queue.put((fn, deliver))

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> T | None:
            # As ThreadPoolExecutor does: a future its caller cancelled while queued never runs.
            if not future.set_running_or_notify_cancel():
                return None
            return fn(*args, **kwargs)

        def deliver(result: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if isinstance(error, concurrent.futures.CancelledError):
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self.call(run, deliver)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not self._STOP:
                        self._pending -= 1
                        _deliver(item[1], None, concurrent.futures.CancelledError())
            for _ in self._threads:
                self._queue.put(self._STOP)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _start_thread(self) -> None:
        # Started at the first call, like ThreadPoolExecutor's: a thread started under
        # SCHED_BATCH inherits the policy, and nothing runs before a fork.
        thread = threading.Thread(
            target=self._work, name=f"aiaas-forward-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        if self._torch_threads is not None:
            # Set in each forward thread as well: it costs nothing, and the benchmark run
            # with it was faster at every concurrency (docs/performance.md).
            torch.set_num_threads(self._torch_threads)
        with serving_mode():
            self._serve()

    def _serve(self) -> None:
        get, stop, lock = self._queue.get, self._STOP, self._lock
        while (item := get()) is not stop:
            fn, deliver = item
            try:
                result = fn()
            except BaseException as exc:  # delivered to the caller, who decides
                error: BaseException | None = exc
                result = None
            else:
                error = None
            # Done before it is delivered: whoever the result wakes sees the thread idle.
            with lock:
                self._pending -= 1
            _deliver(deliver, result, error)
            # Drop the batch's arrays now, not when the next call arrives.
            item = fn = deliver = result = None


def _deliver(deliver: Deliver, result: Any, error: BaseException | None) -> None:
    try:
        deliver(result, error)
    except Exception:  # a broken callback must not take the forward thread down with it
        log.exception("delivering a forward result failed")


def call_in_thread(
    executor: concurrent.futures.Executor, fn: Callable[[], Any], deliver: Deliver
) -> None:
    """``ForwardThreads.call`` on any executor: the lean path where there is one."""
    if isinstance(executor, ForwardThreads):
        executor.call(fn, deliver)
        return

    def done(work: concurrent.futures.Future[Any]) -> None:
        if work.cancelled():
            deliver(None, concurrent.futures.CancelledError())
        elif (error := work.exception()) is not None:
            deliver(None, error)
        else:
            deliver(work.result(), None)

    executor.submit(fn).add_done_callback(done)


def make_executor(threads: int = 1, *, torch_threads: int | None = None) -> ForwardThreads:
    """An executor for forward passes, with torch's intra-op threads capped.

    Measured on 2 vCPUs (the example LSTM and a 784-256-256-10 MLP): a forward on a
    worker thread runs as fast as inline once started, and torch passes its thread
    setting on to new threads; what costs is (a) the hop, ~100 us of thread wake-ups per
    request when idle, and (b) intra-op threads that, with the event-loop thread,
    outnumber the cores: at torch's default of one per core the LSTM ran up to 2x slower
    and served ~2.3x fewer requests per second under load than with one thread.

    So unless ``torch_threads`` says otherwise, the CPUs left after the event loop are
    shared out between the worker threads. ``torch.set_num_threads`` is process-wide.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if torch_threads is None:
        torch_threads = max(1, (usable_cpus() - 1) // threads)
    elif torch_threads < 1:
        raise ValueError(f"torch_threads must be >= 1, got {torch_threads}")
    torch.set_num_threads(torch_threads)
    return ForwardThreads(threads, torch_threads=torch_threads)
