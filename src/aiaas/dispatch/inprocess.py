"""Embedded mode: models run in this process, on threads of their own, never the event loop.

Sync predictions go through a dynamic batcher per model version onto one torch thread; async
jobs and trainings run on their own small pools, calling the same task functions a Celery
worker calls. Webhooks are sent by the gateway's ``WebhookSender`` in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aiaas import jobs
from aiaas.context import WorkerContext
from aiaas.jobs import PREDICT_QUEUE, TRAINING_QUEUE, JobKind, Task
from aiaas.serving.batching import BatchParts, make_executor
from aiaas.serving.pool import BatcherPool
from aiaas.serving.spec import ServingSpec

log = logging.getLogger(__name__)


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
        self._batchers = BatcherPool(
            BatchParts(
                run_batch=self._run_batch,
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
        start = time.perf_counter()
        outputs = self.ctx.runtime(spec).predict(batch)
        self._compute_latency.observe(time.perf_counter() - start)
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
