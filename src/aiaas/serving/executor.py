"""The thread pool that runs forward passes, sized together with torch's own threads."""

from __future__ import annotations

import concurrent.futures
import os

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


def make_executor(
    threads: int = 1, *, torch_threads: int | None = None
) -> concurrent.futures.ThreadPoolExecutor:
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
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix="aiaas-forward",
        # Set in each forward thread as well: it costs nothing, and the benchmark run with it
        # was faster at every concurrency (docs/performance.md).
        initializer=torch.set_num_threads,
        initargs=(torch_threads,),
    )
