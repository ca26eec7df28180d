"""Celery tasks: one thin wrapper per kind of job, handing the id to that kind's task code, and
the explain task (``worker.explain``); the sync batch consumer's start and stop, tied to the
worker's lifecycle.

Each worker process builds its :class:`WorkerContext` on first use, after any fork, so no
database engine, Redis connection or CUDA context is inherited from a parent.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, current_task, signals

from aiaas.config import get_settings
from aiaas.context import WorkerContext, build_context
from aiaas.jobs import (
    PREDICT_QUEUE,
    REQUEST_ID_TASK_HEADER,
    TRACEPARENT_TASK_HEADER,
    JobKind,
    Task,
)
from aiaas.logs import RequestContext, bind_request, flush_logs, unbind_request
from aiaas.metering.meter import AccountUsageCollector
from aiaas.metrics import Metrics
from aiaas.presence import Presence
from aiaas.serving import wire
from aiaas.tracing import Tracing
from aiaas.worker.batches import WORKER_LOG, BatchConsumer
from aiaas.worker.explain import explain_task

log = logging.getLogger(__name__)
_lock = threading.Lock()
_ctx: WorkerContext | None = None
_consumer: BatchConsumer | None = None
_metrics: Metrics | None = None


def worker_metrics() -> Metrics:
    """This process's metrics, served by ``aiaas worker --metrics-port``."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics()
        return _metrics


def context() -> WorkerContext:
    global _ctx
    metrics = worker_metrics()
    with _lock:
        if _ctx is None:
            settings = get_settings()
            tracing = Tracing.from_endpoint(settings.otel_endpoint, service="aiaas-worker")
            _ctx = build_context(
                settings, metrics=metrics, schedule_webhook=_schedule, tracing=tracing
            )
            _meter_usage(_ctx, metrics)
            _announce(_ctx)
            if tracing is not None:
                _close_on_shutdown(tracing)
        return _ctx


def _close_on_shutdown(tracing: Tracing) -> None:
    """Send the spans still buffered when the process stops."""

    def close(**_: object) -> None:
        tracing.close()

    signals.worker_process_shutdown.connect(close, weak=False)
    signals.worker_shutdown.connect(close, weak=False)


def _meter_usage(ctx: WorkerContext, metrics: Metrics) -> None:
    """Show this process's usage meter on its metrics, and add what it counted to the usage
    table every AIAAS_USAGE_FLUSH_S and when the worker stops."""
    metrics.registry.register(AccountUsageCollector(ctx.usage))

    def flush(**_: object) -> None:
        try:
            ctx.usage.flush(ctx.database)
        except Exception:  # the meter keeps its counts for the next flush
            log.exception("usage flush failed")

    def flush_forever() -> None:
        while not ctx.stopping.wait(ctx.settings.usage_flush_s):
            flush()

    threading.Thread(target=flush_forever, name="usage-flush", daemon=True).start()
    signals.worker_process_shutdown.connect(flush, weak=False)
    signals.worker_shutdown.connect(flush, weak=False)


def _announce(ctx: WorkerContext) -> None:
    """Listed among the workers alive (the admin overview) while this process serves."""
    url = ctx.settings.broker_url
    if not url:
        return
    presence = Presence(url, "worker", details={"device": str(ctx.device)}).start()

    def stop(**_: object) -> None:
        presence.stop()

    signals.worker_process_shutdown.connect(stop, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)


def _schedule(job_id: str, delay_s: float) -> None:
    # The finished job's row says its webhook is due; the gateways' senders poll for it.
    pass


def serve_batches(queue: str = PREDICT_QUEUE, *, forked: bool = False) -> None:
    """Consume ``queue``'s sync batches in this process, or in each child a prefork pool
    forks (``forked``), alongside Celery's own consumer; stop with the process."""

    def start(**_: object) -> None:
        global _consumer
        settings = get_settings()
        assert settings.broker_url
        with _lock:
            if _consumer is None:
                _consumer = BatchConsumer(context, settings.broker_url, queue)
                _consumer.start()

    def stop(**_: object) -> None:
        with _lock:
            consumer = _consumer
        if consumer is not None:
            consumer.stop()

    if forked:
        signals.worker_process_init.connect(start, weak=False)
        signals.worker_process_shutdown.connect(stop, weak=False)
    else:
        start()
        signals.worker_shutdown.connect(stop, weak=False)


def register(app: Celery, kinds: Sequence[JobKind]) -> None:
    """A task per kind of job, by the name the dispatcher publishes it under. Acknowledged
    late and rejected back to the queue when the worker dies: the job row decides whether a
    redelivered message has anything left to do."""
    for kind in kinds:
        app.task(name=kind.task, acks_late=True, reject_on_worker_lost=True)(_in_context(kind.run))
    # A sync request's: acknowledged at once, as nobody would wait for a redelivered one.
    app.task(name=wire.EXPLAIN_TASK, acks_late=False, reject_on_worker_lost=False)(
        explain_task(context)
    )

    # A prefork child leaves through os._exit, past atexit: its last lines go out here.
    signals.worker_process_shutdown.connect(_flush_logs, weak=False)
    signals.worker_shutdown.connect(_flush_logs, weak=False)

    @app.task(name="aiaas.deliver_webhook", acks_late=True, reject_on_worker_lost=True)
    def deliver_webhook(job_id: str) -> bool:
        """Left by gateways of an earlier release: the job's row now drives its delivery."""
        return False


def _flush_logs(**_: object) -> None:
    flush_logs()


def _in_context(run: Task) -> Callable[[str], str]:
    def task(job_id: str) -> str:
        ctx = context()
        # The request that made the job: its id on every line logged while the job runs.
        # (Not ``if current_task``: a task proxy can test false.)
        headers = getattr(current_task, "request", None)
        request_id = _header(headers, REQUEST_ID_TASK_HEADER)
        carried = _header(headers, TRACEPARENT_TASK_HEADER)
        token = bind_request(RequestContext(request_id) if request_id else None)
        started = time.time()
        tracing = ctx.tracing
        span = (
            tracing.consume(
                f"aiaas job {run.__name__}",
                traceparents=[carried],
                sent=started,
                received=started,
                attributes={"aiaas.job_id": job_id},
            )
            if tracing is not None
            else contextlib.nullcontext()
        )
        outcome = "error"
        try:
            with span:
                result = run(ctx, job_id)
            outcome = "ok"
            return result
        finally:
            ctx.metrics.worker_last_handled.labels(run.__name__).set(time.time())
            WORKER_LOG(
                "job",
                task=run.__name__,
                job_id=job_id,
                outcome=outcome,
                seconds=round(time.time() - started, 3),
            )
            unbind_request(token)

    task.__name__ = task.__qualname__ = run.__name__
    return task


def _header(request: Any, name: str) -> str | None:
    value = getattr(request, name, None) if request is not None else None
    return value if isinstance(value, str) and value else None
