from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any

import pytest
import torch

from aiaas.serving.executor import (
    ForwardThreads,
    call_in_thread,
    make_executor,
    use_batch_scheduling,
)
from aiaas.serving.mode import in_serving_mode

needs_sched_batch = pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="the OS has no SCHED_BATCH policy"
)


@needs_sched_batch
def test_batch_scheduling_covers_the_thread_and_the_threads_it_starts() -> None:
    # In a thread of its own: the policy is per thread, and the test runner's must not change.
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = os.sched_getscheduler(0)

    def parent() -> None:
        seen["before"] = os.sched_getscheduler(0)
        seen["applied"] = use_batch_scheduling()
        seen["parent"] = os.sched_getscheduler(0)
        started = threading.Thread(target=child)
        started.start()
        started.join()

    thread = threading.Thread(target=parent)
    thread.start()
    thread.join()
    assert seen["before"] == os.SCHED_OTHER
    assert seen["applied"] is True
    assert seen["parent"] == seen["child"] == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_batch_scheduling_is_a_no_op_where_the_os_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    assert use_batch_scheduling() is False


def test_executor_caps_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        with make_executor(threads=1, torch_threads=1) as pool:
            assert pool.submit(torch.get_num_threads).result() == 1
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads must be >= 1"):
            make_executor(threads=0)
    finally:
        torch.set_num_threads(before)


class Inbox:
    """Collects deliveries, with the thread each came on."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, BaseException | None, str]] = []
        self.arrived = threading.Semaphore(0)

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.got.append((result, error, threading.current_thread().name))
        self.arrived.release()

    def wait(self, n: int) -> None:
        for _ in range(n):
            assert self.arrived.acquire(timeout=10)


def test_forward_threads_deliver_results_and_errors_on_their_thread() -> None:
    inbox = Inbox()
    with ForwardThreads(1) as pool:
        pool.call(lambda: 6 * 7, inbox)
        pool.call(lambda: 1 / 0, inbox)
        inbox.wait(2)
    (result, error, thread), (_, failure, _) = inbox.got
    assert (result, error) == (42, None)
    assert thread.startswith("aiaas-forward")
    assert isinstance(failure, ZeroDivisionError)


def test_forward_threads_survive_a_broken_delivery() -> None:
    inbox = Inbox()

    def broken(result: Any, error: BaseException | None) -> None:
        raise RuntimeError("the callback is broken")

    with ForwardThreads(1) as pool:
        pool.call(lambda: 1, broken)
        pool.call(lambda: 2, inbox)
        inbox.wait(1)
    assert inbox.got[0][:2] == (2, None)


def test_forward_threads_run_in_serving_mode() -> None:
    inbox = Inbox()
    with ForwardThreads(1) as pool:
        pool.call(lambda: (in_serving_mode(), torch.is_inference_mode_enabled()), inbox)
        inbox.wait(1)
    assert inbox.got[0][:2] == ((True, True), None)
    # Only theirs: the caller's thread is left as it was.
    assert not in_serving_mode()
    assert not torch.is_inference_mode_enabled()


def test_forward_threads_are_an_executor() -> None:
    with ForwardThreads(2) as pool:
        assert pool.submit(pow, 2, 10).result(timeout=10) == 1024
        assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(timeout=10)


def test_shutdown_cancels_what_has_not_started_and_refuses_new_calls() -> None:
    started, gate, inbox = threading.Event(), threading.Event(), Inbox()
    pool = ForwardThreads(1)

    def blocker() -> str:
        started.set()
        assert gate.wait(10)
        return "ran"

    pool.call(blocker, inbox)
    assert started.wait(10)
    pool.call(lambda: "queued", inbox)
    queued = pool.submit(lambda: "queued too")
    pool.shutdown(wait=False, cancel_futures=True)
    inbox.wait(1)
    assert isinstance(inbox.got[0][1], concurrent.futures.CancelledError)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.call(lambda: None, inbox)
    gate.set()
    pool.shutdown(wait=True)
    inbox.wait(1)
    assert inbox.got[1][:2] == ("ran", None)


def test_a_future_cancelled_while_queued_never_runs() -> None:
    started, gate, ran = threading.Event(), threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        assert gate.wait(10)

    with ForwardThreads(1) as pool:
        first = pool.submit(blocker)
        assert started.wait(10)
        queued = pool.submit(ran.set)
        assert queued.cancel()
        gate.set()
        first.result(timeout=10)
    assert queued.cancelled()
    assert not ran.is_set()


def test_call_in_thread_delivers_from_any_executor() -> None:
    inbox = Inbox()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call_in_thread(pool, lambda: "plain", inbox)
        call_in_thread(pool, lambda: 1 / 0, inbox)
        inbox.wait(2)
    assert inbox.got[0][:2] == ("plain", None)
    assert isinstance(inbox.got[1][1], ZeroDivisionError)
