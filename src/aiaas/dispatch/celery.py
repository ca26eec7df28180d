"""Distributed mode: the gateway batches requests and pushes each batch onto the ``predict``
queue's batch list, then awaits the reply on a Redis list of its own; async jobs and trainings
travel as Celery tasks carrying ids, and explanations as Celery tasks carrying their rows, whose
answers come back on the same reply list.

The batch path runs on the event loop with no thread in between: one RPUSH per batch, and one
listener task blocked in BLPOP on the gateway's reply list completes the waiting batches. When
the broker is down, predictions answer 503 and async jobs stay queued in the database until the
reconciler can publish them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

import numpy as np
import redis
import redis.asyncio
from kombu.exceptions import OperationalError

from aiaas import jobs
from aiaas.config import Settings
from aiaas.db import Database
from aiaas.errors import GatewayTimeout, ServiceUnavailable
from aiaas.jobs import (
    PREDICT_QUEUE,
    QUEUES,
    REQUEST_ID_TASK_HEADER,
    TRACEPARENT_TASK_HEADER,
    JobKind,
)
from aiaas.logs import RequestContext, current_request
from aiaas.metrics import Metrics
from aiaas.ml.explain import ExplainOptions, Explanation
from aiaas.serving import wire
from aiaas.serving.batching import BATCH_TAGS, BatchParts
from aiaas.serving.pool import BatcherPool
from aiaas.serving.spec import ServingSpec
from aiaas.tracing import traceparent
from aiaas.worker.celery_app import create_celery

log = logging.getLogger(__name__)

# How long one BLPOP of the reply listener blocks (below the socket timeout).
LISTEN_S = 1


def _carried(tags: Sequence[object]) -> tuple[list[str], list[str]]:
    """The ids and traceparents of the requests among ``tags``."""
    request_ids: list[str] = []
    traces: list[str] = []
    for tag in tags:
        if isinstance(tag, RequestContext):
            request_ids.append(tag.request_id)
            carried = traceparent(tag.span)
            if carried is not None:
                traces.append(carried)
    return request_ids, traces


class RemoteError(RuntimeError):
    """The worker failed on this batch; the message is the worker's."""


class CeleryDispatcher:
    def __init__(
        self, settings: Settings, database: Database, metrics: Metrics, kinds: Sequence[JobKind]
    ) -> None:
        assert settings.broker_url
        self.settings = settings
        self._kinds = tuple(kinds)
        self._by_task = jobs.by_task(kinds)
        self.database = database
        self.metrics = metrics
        self.celery = create_celery(settings)
        # For the reconciler and the queue-depth gauge, which run on threads.
        self._redis = redis.Redis.from_url(
            settings.broker_url,
            socket_timeout=settings.broker_timeout_s,
            socket_connect_timeout=settings.broker_timeout_s,
        )
        self._aredis: redis.asyncio.Redis | None = None
        self._batch_key = wire.batch_key(PREDICT_QUEUE)
        self._reply_key = f"{wire.REPLY_PREFIX}{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future[wire.Reply]] = {}
        self._batchers = BatcherPool(
            BatchParts(
                run_batch_async=self._run_batch,
                on_batch=self._on_batch,
                max_inflight=settings.max_batches_in_flight,
                timeout_s=settings.predict_timeout_s,
            )
        )
        self._local = threading.local()
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._aredis = redis.asyncio.Redis.from_url(
            self.settings.broker_url or "",
            socket_timeout=max(self.settings.broker_timeout_s, LISTEN_S + 1),
            socket_connect_timeout=self.settings.broker_timeout_s,
        )
        self._listener = asyncio.create_task(self._listen(), name="aiaas-replies")

    async def close(self) -> None:
        await self._batchers.close_all()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._aredis is not None:
            await self._aredis.aclose()
        self._redis.close()

    def predict(self, spec: ServingSpec, inputs: np.ndarray) -> Awaitable[np.ndarray]:
        # The request goes with its rows: the batch message names every request it carries.
        return self._batchers.get(spec).submit(inputs, current_request())

    def _on_batch(self, rows: int) -> None:
        self.metrics.batch_size.observe(rows)

    async def _run_batch(self, spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        assert self._aredis is not None, "start() was not called"
        batch_id = uuid.uuid4().hex
        now = time.time()
        request_ids, traces = _carried(BATCH_TAGS.get())
        message = wire.pack_batch(
            spec.to_dict(),
            batch,
            reply_to=self._reply_key,
            batch_id=batch_id,
            sent=now,
            deadline=now + self.settings.predict_timeout_s,
            request_ids=request_ids,
            traces=traces,
        )
        reply = await self._ask(batch_id, self._aredis.rpush(self._batch_key, message))
        if reply.outputs is None:
            raise RemoteError(str(reply.error))
        return reply.outputs

    async def explain(
        self, spec: ServingSpec, inputs: np.ndarray, options: ExplainOptions
    ) -> Explanation:
        request_id = uuid.uuid4().hex
        now = time.time()
        request_ids, traces = _carried((current_request(),))
        message = wire.pack_explain(
            spec.to_dict(),
            inputs,
            options.to_dict(),
            reply_to=self._reply_key,
            request_id=request_id,
            sent=now,
            deadline=now + self.settings.predict_timeout_s,
            request_ids=request_ids,
            traces=traces,
        )
        # A Celery task (see serving.wire), published off the loop: kombu's I/O blocks.
        send = asyncio.to_thread(self._publish, wire.EXPLAIN_TASK, [message], queue=PREDICT_QUEUE)
        reply = await self._ask(request_id, send)
        if reply.outputs is None:
            raise RemoteError(str(reply.error))
        return wire.read_explanation(reply)

    async def _ask(self, request_id: str, send: Awaitable[object]) -> wire.Reply:
        """Await ``send``, then the reply to ``request_id`` on this gateway's reply list, all
        within the predict timeout."""
        timeout = self.settings.predict_timeout_s
        future: asyncio.Future[wire.Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(timeout):
                await send
                return await future
        except (OperationalError, redis.RedisError, OSError) as exc:
            raise ServiceUnavailable(f"The job broker is unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise GatewayTimeout(f"No worker answered within {timeout:g}s.") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _listen(self) -> None:
        assert self._aredis is not None
        while True:
            try:
                item = await self._aredis.blpop([self._reply_key], timeout=LISTEN_S)
            except (redis.RedisError, OSError) as exc:
                # The broker is down: no reply to a batch in flight can come any more (a
                # restarted Redis has lost the reply list), so answer its callers now.
                self._fail_pending(exc)
                await asyncio.sleep(0.5)
                continue
            if item is None:
                continue
            try:
                raw = item[1]
                assert isinstance(raw, bytes)  # the client does not decode responses
                reply = wire.read_reply(raw)
            except ValueError as exc:
                log.warning("unreadable reply on %s: %s", self._reply_key, exc)
                continue
            future = self._pending.get(reply.batch_id)
            if future is not None and not future.done():
                future.set_result(reply)

    def _publish(self, task: str, args: list[Any], *, queue: str) -> None:
        """Publish one task message on a connection this thread keeps.

        The same message ``send_task`` builds, without its per-call set-up: a long-lived
        producer per thread cut publishing from 3.3 to 0.9 ms here (kombu connections are not
        thread-safe, hence one per thread). A failed publish drops the connection, so the next
        one reconnects.
        """
        local = self._local
        producer = getattr(local, "producer", None)
        if producer is None:
            connection = self.celery.connection_for_write()
            connection.ensure_connection(max_retries=1)
            producer = local.producer = connection.Producer(serializer="json")
            local.connection = connection
        task_id = uuid.uuid4().hex
        message = self.celery.amqp.as_task_v2(task_id, task, args=args)
        # The HTTP request that made the job (none for one the reconciler hands out again).
        request = current_request()
        if request is not None:
            message.headers[REQUEST_ID_TASK_HEADER] = request.request_id
            carried = traceparent(request.span)
            if carried is not None:
                message.headers[TRACEPARENT_TASK_HEADER] = carried
        try:
            producer.publish(
                message.body,
                routing_key=queue,
                exchange="",
                headers=message.headers,
                serializer="json",
                retry=False,
                **message.properties,
            )
        except Exception:
            local.producer = None
            with contextlib.suppress(Exception):
                local.connection.release()
            raise

    def _fail_pending(self, exc: BaseException) -> None:
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(ServiceUnavailable(f"The job broker went away: {exc}"))

    def submit(self, task: str, job_id: str) -> None:
        try:
            self._publish(task, [job_id], queue=self._by_task[task].queue)
        except (OperationalError, redis.RedisError, OSError) as exc:
            # The row stays queued; the reconciler publishes it once the broker is back.
            log.warning("could not publish %s %s: %s", task, job_id, exc)

    def reconcile(self) -> int:
        handed = jobs.reconcile(
            self.database,
            self._kinds,
            requeue_after_s=self.settings.requeue_after_s,
            submit=self.submit,
        )
        self.refresh_queue_depth()
        return handed

    def refresh_queue_depth(self) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for queue in QUEUES:
                pipe.llen(queue)
                pipe.llen(wire.batch_key(queue))
            lengths = pipe.execute()
            for i, queue in enumerate(QUEUES):
                # What waits for a worker of this queue: Celery tasks and sync batches alike.
                waiting = int(lengths[2 * i]) + int(lengths[2 * i + 1])
                self.metrics.queue_depth.labels(queue).set(waiting)
        except (redis.RedisError, OSError):
            pass
