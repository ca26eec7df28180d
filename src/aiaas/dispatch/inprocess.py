"""Embedded mode: models run in this process, on threads of their own.

Sync predictions go through a dynamic batcher per model version onto one torch thread (a lone
request to a warm model whose forwards take under ``AIAAS_INLINE_FORWARD_MAX_MS`` runs on the
event loop instead, saving the thread hop: ``_run_inline``); explanations run on that thread
too, one request per call; async jobs and trainings run on their own small pools, calling the
same task functions a Celery worker calls. Webhooks are sent by the gateway's ``WebhookSender``
in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aiaas import jobs
from aiaas.context import WorkerContext
from aiaas.jobs import PREDICT_QUEUE, TRAINING_QUEUE, JobKind, Task
from aiaas.ml.explain import ExplainOptions, Explanation
from aiaas.serving.batching import BatchParts, make_executor
from aiaas.serving.mode import in_serving_mode, serving_mode
from aiaas.serving.pool import BatcherPool
from aiaas.serving.runtime import ModelRuntime
from aiaas.serving.spec import ServingSpec

log = logging.getLogger(__name__)

# Forward timings kept for this many runtimes at most.
MAX_TIMED_RUNTIMES = 10_000


class InProcessDispatcher:
    def __init__(
        self,
        ctx: WorkerContext,
        *,
        kinds: Sequence[JobKind],
        on_webhook_due: Callable[[], None],
    ) -> None:
        self.ctx = ctx
        self._kinds = tuple(kinds)
        self._by_task = jobs.by_task(kinds)
        self._on_webhook_due = on_webhook_due
        self._torch = make_executor(threads=1)
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="aiaas-jobs")
        # One training at a time, beside the predictions rather than in their way.
        self._trainings = ThreadPoolExecutor(1, thread_name_prefix="aiaas-training")
        self._pools = {PREDICT_QUEUE: self._jobs, TRAINING_QUEUE: self._trainings}
        # Seconds per row of each runtime's recent forwards (runtime_key → moving average).
        self._row_seconds: dict[str, float] = {}
        self._inline_max_s = ctx.settings.inline_forward_max_ms / 1000
        # Serving mode on the event loop's thread, entered by the first inline forward.
        self._loop_mode = contextlib.ExitStack()
        self._batchers = BatcherPool(
            BatchParts(
                run_batch=self._run_batch,
                run_inline=self._run_inline if self._inline_max_s > 0 else None,
                executor=self._torch,
                on_batch=self._on_batch,
                timeout_s=ctx.settings.predict_timeout_s,
                # The queue stage of a sync prediction: its wait in the batcher.
                on_wait=ctx.metrics.prediction_latency.labels("queue").observe,
            )
        )
        self._closed = False
        # Looked up once: a labelled child costs a lock and a dict build per lookup.
        self._compute_latency = ctx.metrics.prediction_latency.labels("compute")

    def _run_batch(self, spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        return self._timed(self.ctx.runtime(spec), spec, batch)

    def _run_inline(self, spec: ServingSpec, batch: np.ndarray) -> np.ndarray | None:
        """The batch's outputs computed here, on the event loop, or None to send it to the
        forward thread: unless the runtime is loaded already (a load takes seconds), its
        forwards are known to be short, and the forward thread is idle (the loop would
        otherwise compete with another model's batch for the cores)."""
        per_row = self._row_seconds.get(spec.runtime_key)
        if per_row is None or per_row * len(batch) > self._inline_max_s or not self._torch.idle:
            return None
        runtime = self.ctx.runtimes.if_loaded(spec)
        if runtime is None:
            return None
        if not in_serving_mode():
            # Once, for the loop's thread, as the forward thread does: around each forward it
            # cost a few percent of a small model's requests (docs/performance.md). Nothing
            # else on the loop's thread runs torch.
            self._loop_mode.enter_context(serving_mode())
        return self._timed(runtime, spec, batch)

    def _timed(self, runtime: ModelRuntime, spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        outputs = runtime.predict(batch)
        took = time.perf_counter() - start
        self._compute_latency.observe(took)
        # Per row over a batch overstates a bigger batch's cost per row: on the safe side.
        key, per_row = spec.runtime_key, took / len(batch)
        previous = self._row_seconds.get(key)
        if previous is None and len(self._row_seconds) >= MAX_TIMED_RUNTIMES:
            self._row_seconds.clear()  # many models served once: measure them again
        self._row_seconds[key] = per_row if previous is None else 0.8 * previous + 0.2 * per_row
        return outputs

    def _on_batch(self, rows: int) -> None:
        self.ctx.metrics.batch_size.observe(rows)

    async def start(self) -> None:
        # Whatever was queued when the process stopped is ours to finish: nobody else runs jobs.
        try:
            await asyncio.to_thread(self._hand_out_stale, 0)
        except Exception:  # the database may be down at start; the reconciler tries again
            log.exception("could not look for unfinished jobs at start")

    async def close(self) -> None:
        self._closed = True
        self._loop_mode.close()
        # A training stops at its next batch; its row is resumed from the checkpoint later.
        self.ctx.stopping.set()
        await self._batchers.close_all()
        for pool in (self._jobs, self._trainings, self._torch):
            pool.shutdown(wait=False, cancel_futures=True)
        # Let the threads finish what they were doing before the database goes away.
        await asyncio.to_thread(self._trainings.shutdown, wait=True)
        await asyncio.to_thread(self._jobs.shutdown, wait=True)

    def predict(self, spec: ServingSpec, inputs: np.ndarray) -> Awaitable[np.ndarray]:
        return self._batchers.get(spec).submit(inputs)

    async def explain(
        self, spec: ServingSpec, inputs: np.ndarray, options: ExplainOptions
    ) -> Explanation:
        # On the forward thread, between two batches: the runtime cache is that thread's, and
        # torch's threads stay sized for one thread's work.
        work = self._torch.submit(self._explain, spec, inputs, options)
        async with asyncio.timeout(self.ctx.settings.predict_timeout_s):
            # A timeout cancels the work if it has not started; started, it runs out.
            return await asyncio.wrap_future(work)

    def _explain(
        self, spec: ServingSpec, inputs: np.ndarray, options: ExplainOptions
    ) -> Explanation:
        return self.ctx.runtime(spec).explain(inputs, options)

    def submit(self, task: str, job_id: str) -> None:
        if not self._closed:
            kind = self._by_task[task]
            self._pools[kind.queue].submit(self._guarded, kind.run, job_id)

    def schedule_webhook(self, job_id: str, delay_s: float) -> None:
        """A finished job's webhook is due (its row says so): wake the sender."""
        self._on_webhook_due()

    def reconcile(self) -> int:
        return self._hand_out_stale(self.ctx.settings.requeue_after_s)

    def _hand_out_stale(self, requeue_after_s: float) -> int:
        return jobs.reconcile(
            self.ctx.database, self._kinds, requeue_after_s=requeue_after_s, submit=self.submit
        )

    def _guarded(self, task: Task, job_id: str) -> None:
        try:
            task(self.ctx, job_id)
        except Exception:  # the row stays as it was; the reconciler retries it later
            log.exception("task %s failed for %s", task.__name__, job_id)
