from __future__ import annotations

import os
import threading

import pytest
import torch

from aiaas.serving.executor import make_executor, use_batch_scheduling

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
