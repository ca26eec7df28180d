from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest

from aiaas.serving import Batcher, BatcherClosed, BatchParts
from aiaas.serving.batching import BatchTimeout
from aiaas.serving.executor import ForwardThreads

T = TypeVar("T")


def compute(x: np.ndarray) -> np.ndarray:
    """A per-row toy model: batching must not change any row's result."""
    flat = x.reshape(len(x), -1)
    return np.stack([flat.sum(axis=1), flat.max(axis=1)], axis=1)


class Recorder:
    """``run_batch`` that records each batch's shape, can be held at a gate and fails on
    negative inputs."""

    def __init__(self, *, held: bool = False) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        self.entered.release()
        assert self.gate.wait(10)
        if (batch < 0).any():
            raise ValueError("negative input")
        return compute(batch)

    @property
    def rows(self) -> list[int]:
        return [shape[0] for shape in self.shapes]


@pytest.fixture(params=["forward-threads", "thread-pool"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    # The platform's own lean threads, and any standard executor.
    pool: Executor = (
        ForwardThreads(1) if request.param == "forward-threads" else ThreadPoolExecutor(1)
    )
    with pool:
        yield pool


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def rows(value: float, n: int = 1, shape: tuple[int, ...] = (4,)) -> np.ndarray:
    return np.full((n, *shape), value, dtype=np.float32)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def hold(batcher: Batcher, recorder: Recorder) -> asyncio.Task[np.ndarray]:
    """Start a request whose batch blocks at the gate, so that later ones queue."""
    blocker = asyncio.ensure_future(batcher.submit(rows(100.0)))
    await asyncio.to_thread(recorder.entered.acquire)
    return blocker


def test_concurrent_requests_are_batched(executor: Executor) -> None:
    recorder, batches = Recorder(), list[int]()
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor, on_batch=batches.append),
        max_batch_size=64,
        max_delay_ms=0,
    )
    inputs = [rows(float(i)) for i in range(64)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit(x) for x in inputs))

    results = run(main())
    assert len(recorder.shapes) < 64
    assert sum(recorder.rows) == 64
    assert batches == recorder.rows
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, compute(x))


def test_each_request_gets_exactly_its_rows(executor: Executor) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=0
    )
    inputs = [rows(1.0), rows(2.0, 3), rows(3.0), rows(4.0, 2)]
    inputs[1][1] = 7.0  # rows of one request differ too

    async def main() -> list[np.ndarray]:
        blocker = await hold(batcher, recorder)
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await until(lambda: batcher.queued == len(inputs))
        recorder.gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    results = run(main())
    assert recorder.rows == [1, 7]
    for x, result in zip(inputs, results, strict=True):
        assert result.shape == (len(x), 2)
        np.testing.assert_array_equal(result, compute(x))


def test_at_concurrency_one_every_request_is_its_own_batch(executor: Executor) -> None:
    recorder = Recorder()
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=0
    )

    async def main() -> None:
        for i in range(20):
            np.testing.assert_array_equal(await batcher.submit(rows(i)), compute(rows(i)))

    run(main())
    assert recorder.rows == [1] * 20


def test_a_failed_batch_fails_only_its_requests(executor: Executor) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=0
    )

    async def main() -> list[np.ndarray | BaseException]:
        blocker = await hold(batcher, recorder)
        tasks = [
            asyncio.ensure_future(batcher.submit(x))
            for x in (rows(-1.0, shape=(3,)), rows(1.0, shape=(3,)), rows(2.0), rows(3.0))
        ]
        await until(lambda: batcher.queued == 4)
        recorder.gate.set()
        await blocker
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        outcomes.append(await batcher.submit(rows(5.0)))
        return outcomes

    bad, stacked_with_bad, good, other_good, later = run(main())
    assert isinstance(bad, ValueError)
    assert isinstance(stacked_with_bad, ValueError)
    np.testing.assert_array_equal(good, compute(rows(2.0)))
    np.testing.assert_array_equal(other_good, compute(rows(3.0)))
    np.testing.assert_array_equal(later, compute(rows(5.0)))
    assert recorder.rows == [1, 2, 2, 1]


def test_differing_trailing_shapes_are_never_stacked(executor: Executor) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=0
    )
    inputs = [rows(float(i), shape=(5 if i % 2 else 7, 2)) for i in range(10)]

    async def main() -> list[np.ndarray]:
        blocker = await hold(batcher, recorder)
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await until(lambda: batcher.queued == len(inputs))
        recorder.gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    results = run(main())
    assert sorted(recorder.shapes[1:]) == [(5, 5, 2), (5, 7, 2)]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, compute(x))


def test_max_batch_size_is_respected_and_big_requests_are_not_split(
    executor: Executor,
) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=8, max_delay_ms=0
    )
    inputs = [rows(float(i)) for i in range(30)] + [rows(99.0, 20)] + [rows(7.0, 3)]

    async def main() -> list[np.ndarray]:
        blocker = await hold(batcher, recorder)
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        await until(lambda: batcher.queued == len(inputs))
        recorder.gate.set()
        await blocker
        return await asyncio.gather(*tasks)

    results = run(main())
    # Oldest first; the 20-row request runs whole and on its own.
    assert recorder.rows[1:] == [8, 8, 8, 6, 20, 3]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, compute(x))


def test_a_cancelled_request_does_not_break_the_others(executor: Executor) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=0
    )

    async def main() -> None:
        blocker = await hold(batcher, recorder)
        tasks = [asyncio.ensure_future(batcher.submit(rows(float(i)))) for i in range(3)]
        await until(lambda: batcher.queued == 3)
        tasks[1].cancel()
        blocker.cancel()  # its batch is already computing
        recorder.gate.set()
        np.testing.assert_array_equal(await tasks[0], compute(rows(0.0)))
        np.testing.assert_array_equal(await tasks[2], compute(rows(2.0)))
        for cancelled in (tasks[1], blocker):
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        np.testing.assert_array_equal(await batcher.submit(rows(9.0)), compute(rows(9.0)))

    run(main())
    assert recorder.rows == [1, 2, 1]


def test_max_delay_waits_for_more_rows(executor: Executor) -> None:
    recorder = Recorder()
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=4, max_delay_ms=200
    )

    async def main() -> None:
        await asyncio.gather(*(batcher.submit(rows(float(i))) for i in range(3)))

    run(main())
    assert recorder.rows == [3]


def test_a_full_batch_does_not_wait_for_the_delay(executor: Executor) -> None:
    recorder = Recorder()
    # An hour: the test's 20 s timeout fails it if a full batch waited for the delay.
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=4, max_delay_ms=3_600_000
    )

    async def main() -> None:
        await asyncio.gather(*(batcher.submit(rows(float(i), 2)) for i in range(2)))

    run(main())
    assert recorder.rows == [4]


def test_close_drains_the_queue_and_refuses_new_requests(executor: Executor) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor), max_batch_size=64, max_delay_ms=3_600_000
    )

    async def main() -> list[np.ndarray]:
        tasks = [asyncio.ensure_future(batcher.submit(rows(float(i)))) for i in range(3)]
        await until(lambda: batcher.queued == 3)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.to_thread(recorder.entered.acquire)
        with pytest.raises(BatcherClosed):
            await batcher.submit(rows(0.0))
        recorder.gate.set()
        await closing
        assert batcher.inflight == 0
        return [task.result() for task in tasks]

    results = run(main())
    assert recorder.rows == [3]
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, compute(rows(float(i))))


def test_a_shut_down_executor_fails_requests_instead_of_hanging() -> None:
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    batcher = Batcher(
        BatchParts(run_batch=compute, executor=pool), max_batch_size=8, max_delay_ms=0
    )

    async def main() -> None:
        with pytest.raises(RuntimeError, match="shutdown"):
            await batcher.submit(rows(1.0))

    run(main())


def test_wrong_output_rows_fail_the_batch(executor: Executor) -> None:
    batcher = Batcher(
        BatchParts(run_batch=lambda x: x[:1], executor=executor), max_batch_size=8, max_delay_ms=0
    )

    async def main() -> None:
        with pytest.raises(RuntimeError, match="for a batch of 2 rows"):
            await batcher.submit(rows(1.0, 2))

    run(main())


def test_empty_requests_are_refused(executor: Executor) -> None:
    batcher = Batcher(
        BatchParts(run_batch=compute, executor=executor), max_batch_size=8, max_delay_ms=0
    )

    async def main() -> None:
        with pytest.raises(ValueError, match="at least one row"):
            await batcher.submit(np.zeros((0, 4), dtype=np.float32))

    run(main())


def test_several_batches_in_flight() -> None:
    recorder = Recorder(held=True)
    with ThreadPoolExecutor(2) as pool:
        batcher = Batcher(
            BatchParts(run_batch=recorder, executor=pool, max_inflight=2),
            max_batch_size=8,
            max_delay_ms=0,
        )

        async def main() -> None:
            first = asyncio.ensure_future(batcher.submit(rows(1.0)))
            second = asyncio.ensure_future(batcher.submit(rows(2.0)))
            for _ in range(2):  # both batches reach run_batch before either finishes
                await asyncio.to_thread(recorder.entered.acquire)
            third = asyncio.ensure_future(batcher.submit(rows(3.0)))
            await until(lambda: batcher.queued == 1)
            recorder.gate.set()
            for task, value in ((first, 1.0), (second, 2.0), (third, 3.0)):
                np.testing.assert_array_equal(await task, compute(rows(value)))

        run(main())
    assert recorder.rows == [1, 1, 1]


def test_a_batcher_outlives_its_event_loop(executor: Executor) -> None:
    batcher = Batcher(
        BatchParts(run_batch=compute, executor=executor), max_batch_size=8, max_delay_ms=0
    )

    async def one(value: float) -> np.ndarray:
        return await batcher.submit(rows(value))

    for value in (1.0, 2.0):
        np.testing.assert_array_equal(run(one(value)), compute(rows(value)))


class AsyncRecorder:
    """``run_batch_async``: waits (as a remote worker would) until released, records shapes,
    fails on negative inputs."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.release: asyncio.Event | None = None

    async def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        assert self.release is not None
        await self.release.wait()
        if (batch < 0).any():
            raise ValueError("negative input")
        return compute(batch)


def test_a_coroutine_batch_runs_on_the_loop_and_batches_alike() -> None:
    recorder = AsyncRecorder()
    batcher = Batcher(
        BatchParts(run_batch_async=recorder, max_inflight=2), max_batch_size=64, max_delay_ms=0
    )
    inputs = [rows(float(i)) for i in range(1, 41)]

    async def main() -> list[np.ndarray]:
        recorder.release = asyncio.Event()
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in inputs]
        # The first two requests leave at once (two batches in flight); the rest queue.
        await until(lambda: len(recorder.shapes) == 2 and batcher.queued == 38)
        recorder.release.set()
        return await asyncio.gather(*tasks)

    results = run(main())
    assert [shape[0] for shape in recorder.shapes] == [1, 1, 38]
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result, compute(x))


def test_a_failed_coroutine_batch_fails_only_its_requests() -> None:
    recorder = AsyncRecorder()
    batcher = Batcher(BatchParts(run_batch_async=recorder), max_batch_size=2, max_delay_ms=0)

    async def main() -> list[np.ndarray | BaseException]:
        recorder.release = asyncio.Event()
        recorder.release.set()
        bad = asyncio.ensure_future(batcher.submit(rows(-1.0)))
        good = asyncio.ensure_future(batcher.submit(rows(2.0)))
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = run(main())
    assert isinstance(bad, ValueError)
    assert isinstance(good, np.ndarray)
    np.testing.assert_array_equal(good, compute(rows(2.0)))


def test_a_batcher_runs_either_on_threads_or_on_the_loop(executor: Executor) -> None:
    with pytest.raises(ValueError, match="run_batch_async"):
        Batcher(BatchParts(run_batch=compute), max_batch_size=8, max_delay_ms=0)
    with pytest.raises(ValueError, match="run_batch_async"):
        Batcher(
            BatchParts(run_batch=compute, executor=executor, run_batch_async=AsyncRecorder()),
            max_batch_size=8,
            max_delay_ms=0,
        )


def test_requests_past_the_timeout_fail_and_their_batch_still_serves_the_rest(
    executor: Executor,
) -> None:
    recorder = Recorder(held=True)
    batcher = Batcher(
        BatchParts(run_batch=recorder, executor=executor, timeout_s=0.3),
        max_batch_size=64,
        max_delay_ms=0,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        computing = await hold(batcher, recorder)  # in a batch that does not come back
        queued = asyncio.ensure_future(batcher.submit(rows(1.0)))  # waiting for that batch
        for late in (computing, queued):
            with pytest.raises(BatchTimeout, match=r"no answer within 0\.3s"):
                await late
        assert 0.3 <= loop.time() - started < 5
        # A request that arrives after them has a deadline of its own.
        fresh = asyncio.ensure_future(batcher.submit(rows(2.0)))
        await asyncio.sleep(0.1)
        recorder.gate.set()
        np.testing.assert_array_equal(await fresh, compute(rows(2.0)))
        await until(lambda: batcher.queued == batcher.inflight == 0)

    run(main())
    # The timed-out request's batch still ran; the one that timed out in the queue was
    # dropped before its batch started.
    assert recorder.rows == [1, 1]


def test_answered_requests_are_not_timed_out(executor: Executor) -> None:
    batcher = Batcher(
        BatchParts(run_batch=Recorder(), executor=executor, timeout_s=0.2),
        max_batch_size=4,
        max_delay_ms=0,
    )

    async def main() -> None:
        for i in range(3):
            np.testing.assert_array_equal(
                await batcher.submit(rows(float(i))), compute(rows(float(i)))
            )
        # Past every deadline: the timer finds nothing left to fail.
        await asyncio.sleep(0.3)
        np.testing.assert_array_equal(await batcher.submit(rows(7.0)), compute(rows(7.0)))
        await batcher.close()

    run(main())


def test_timeout_must_be_positive(executor: Executor) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Batcher(
            BatchParts(run_batch=compute, executor=executor, timeout_s=0),
            max_batch_size=1,
            max_delay_ms=0,
        )


def test_a_batch_waiting_behind_another_models_forward_drops_its_expired_requests(
    executor: Executor,
) -> None:
    """Two models share the torch thread: while one's long forward runs, the other's batch
    waits in the executor past its deadline; it is answered 504 and never computed."""
    slow, other = Recorder(held=True), Recorder()
    long_model = Batcher(
        BatchParts(run_batch=slow, executor=executor), max_batch_size=8, max_delay_ms=0
    )
    short_model = Batcher(
        BatchParts(run_batch=other, executor=executor, timeout_s=0.2),
        max_batch_size=8,
        max_delay_ms=0,
    )

    async def main() -> None:
        blocker = await hold(long_model, slow)
        late = asyncio.ensure_future(short_model.submit(rows(1.0)))
        with pytest.raises(BatchTimeout):
            await late
        slow.gate.set()
        await blocker
        await until(lambda: short_model.inflight == 0)
        # Served again once the thread is free, with a deadline of its own.
        np.testing.assert_array_equal(await short_model.submit(rows(3.0)), compute(rows(3.0)))

    run(main())
    assert other.rows == [1]  # only the request that came in time was computed


def test_a_batch_whose_callers_all_gave_up_is_never_computed(executor: Executor) -> None:
    """A caller that cancels while its batch waits for the shared thread is not computed
    for; with nobody left in the batch, its forward does not run at all."""
    slow, other = Recorder(held=True), Recorder()
    long_model = Batcher(
        BatchParts(run_batch=slow, executor=executor), max_batch_size=8, max_delay_ms=0
    )
    short_model = Batcher(
        BatchParts(run_batch=other, executor=executor), max_batch_size=8, max_delay_ms=0
    )

    async def main() -> None:
        blocker = await hold(long_model, slow)
        abandoned = short_model.submit(rows(1.0))
        assert short_model.inflight == 1  # handed to the thread, behind the long forward
        abandoned.cancel()
        slow.gate.set()
        await blocker
        await until(lambda: short_model.inflight == 0)

    run(main())
    assert other.shapes == []


def test_only_the_callers_still_waiting_are_computed(executor: Executor) -> None:
    slow, other = Recorder(held=True), Recorder()
    long_model = Batcher(
        BatchParts(run_batch=slow, executor=executor), max_batch_size=8, max_delay_ms=0
    )
    # Two rows fill a batch at once; the long delay keeps them together until then.
    short_model = Batcher(
        BatchParts(run_batch=other, executor=executor), max_batch_size=2, max_delay_ms=10_000
    )

    async def main() -> None:
        blocker = await hold(long_model, slow)
        gone, kept = short_model.submit(rows(1.0)), short_model.submit(rows(2.0))
        assert (short_model.inflight, short_model.queued) == (1, 0)  # one batch of both
        gone.cancel()
        slow.gate.set()
        await blocker
        np.testing.assert_array_equal(await kept, compute(rows(2.0)))

    run(main())
    assert other.rows == [1]


class Inline:
    """``run_inline`` that records the thread it ran on; ``accept`` says whether it takes a
    batch (None declines, as the embedded dispatcher does for slow or unloaded models)."""

    def __init__(self, accept: bool = True, fail: bool = False) -> None:
        self.accept = accept
        self.fail = fail
        self.threads: list[int] = []
        self.rows: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray | None:
        if not self.accept:
            return None
        self.threads.append(threading.get_ident())
        self.rows.append(len(batch))
        if self.fail:
            raise ValueError("the model failed")
        return compute(batch)


def inline_batcher(executor: Executor, recorder: Recorder, inline: Inline) -> Batcher:
    parts = BatchParts(run_batch=recorder, run_inline=inline, executor=executor, timeout_s=5)
    return Batcher(parts, max_batch_size=64, max_delay_ms=0)


def test_a_lone_request_runs_inline_on_the_loop(executor: Executor) -> None:
    recorder, inline = Recorder(), Inline()
    batcher = inline_batcher(executor, recorder, inline)

    async def main() -> tuple[list[np.ndarray], int]:
        answers = [await batcher.submit(rows(float(i), 2)) for i in range(3)]
        return answers, threading.get_ident()

    answers, loop_thread = run(main())
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, compute(rows(float(i), 2)))
    assert inline.threads == [loop_thread] * 3
    assert recorder.shapes == []  # the executor never saw them
    assert batcher.queued == 0


def test_requests_that_arrive_together_are_batched_not_run_inline(executor: Executor) -> None:
    """Requests woken by one read reach the batcher in one loop turn: the first of them must
    not run alone on the loop, holding the others back and leaving every batch at one row."""
    recorder, inline = Recorder(), Inline()
    batcher = inline_batcher(executor, recorder, inline)

    async def main() -> list[np.ndarray]:
        return list(await asyncio.gather(*(batcher.submit(rows(float(i))) for i in range(5))))

    answers = run(main())
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, compute(rows(float(i))))
    assert inline.rows == []
    assert recorder.rows == [5]


def test_a_declined_request_goes_to_the_executor(executor: Executor) -> None:
    recorder, inline = Recorder(), Inline(accept=False)
    batcher = inline_batcher(executor, recorder, inline)

    async def main() -> np.ndarray:
        return await batcher.submit(rows(2.0))

    np.testing.assert_array_equal(run(main()), compute(rows(2.0)))
    assert recorder.rows == [1]


def test_an_inline_failure_fails_only_its_request(executor: Executor) -> None:
    recorder, inline = Recorder(), Inline(fail=True)
    batcher = inline_batcher(executor, recorder, inline)

    async def main() -> np.ndarray:
        with pytest.raises(ValueError, match="the model failed"):
            await batcher.submit(rows(1.0))
        inline.fail = False
        return await batcher.submit(rows(3.0))

    np.testing.assert_array_equal(run(main()), compute(rows(3.0)))
    assert batcher.inflight == 0


def test_inline_needs_a_batch_run_to_decline_to() -> None:
    async def remote(batch: np.ndarray) -> np.ndarray:
        return batch

    with pytest.raises(ValueError, match="run_inline goes with run_batch"):
        BatchParts(run_batch_async=remote, run_inline=Inline())
