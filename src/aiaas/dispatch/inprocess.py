"""Embedded mode: models run in this process, on threads of their own, never the event loop.

Sync predictions go through a dynamic batcher per model version onto one torch thread; async
jobs and trainings run on their own small pools, calling the same task functions a Celery
worker calls. Webhooks are sent by the gateway's ``WebhookSender`` in both modes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from aiaas.predictions import tasks
from aiaas.serving.batching import BatcherPool, make_executor
from aiaas.serving.spec import ServingSpec
from aiaas.trainings import tasks as training_tasks
from aiaas.worker.context import WorkerContext

log = logging.getLogger(__name__)


class InProcessDispatcher:
    def __init__(self, ctx: WorkerContext, *, on_webhook_due: Callable[[], None]) -> None:
        self.ctx = ctx
        self._on_webhook_due = on_webhook_due
        self._torch = make_executor(threads=1)
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="aiaas-jobs")
        # One training at a time, beside the predictions rather than in their way.
        self._trainings = ThreadPoolExecutor(1, thread_name_prefix="aiaas-training")
        self._batchers = BatcherPool(
            self._run_batch,
            executor=self._torch,
            on_batch=self._on_batch,
            timeout_s=ctx.settings.predict_timeout_s,
            # The queue stage of a sync prediction: its wait in the batcher.
            on_wait=ctx.metrics.prediction_latency.labels("queue").observe,
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
            stale = await asyncio.to_thread(tasks.stale_jobs, self.ctx.database, requeue_after_s=0)
            trainings = await asyncio.to_thread(
                training_tasks.stale_trainings, self.ctx.database, requeue_after_s=0
            )
        except Exception:  # the database may be down at start; the reconciler tries again
            log.exception("could not look for unfinished jobs at start")
            return
        for job_id in stale:
            self.submit_prediction(job_id)
        for training_id in trainings:
            self.submit_training(training_id)

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

    def submit_prediction(self, job_id: str) -> None:
        if not self._closed:
            self._jobs.submit(self._guarded, tasks.run_prediction_job, job_id)

    def submit_training(self, training_id: str) -> None:
        if not self._closed:
            self._trainings.submit(self._guarded, training_tasks.run_training, training_id)

    def schedule_webhook(self, job_id: str, delay_s: float) -> None:
        """A finished job's webhook is due (its row says so): wake the sender."""
        self._on_webhook_due()

    def reconcile(self) -> int:
        stale = tasks.stale_jobs(
            self.ctx.database, requeue_after_s=self.ctx.settings.requeue_after_s
        )
        for job_id in stale:
            self.submit_prediction(job_id)
        trainings = training_tasks.stale_trainings(
            self.ctx.database, requeue_after_s=self.ctx.settings.requeue_after_s
        )
        for training_id in trainings:
            self.submit_training(training_id)
        return len(stale) + len(trainings)

    def _guarded(self, task: tasks.Task, job_id: str) -> None:
        try:
            task(self.ctx, job_id)
        except Exception:  # the row stays as it was; the reconciler retries it later
            log.exception("task %s failed for %s", task.__name__, job_id)
