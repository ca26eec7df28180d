"""Celery tasks: thin wrappers that hand ids to the shared task code.

Each worker process builds its :class:`WorkerContext` on first use, after any fork, so no
database engine, Redis connection or CUDA context is inherited from a parent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from celery import current_app, shared_task

from aiaas.config import get_settings
from aiaas.dispatch import wire
from aiaas.metrics import Metrics
from aiaas.predictions import tasks
from aiaas.serving.spec import ServingSpec
from aiaas.trainings import tasks as training_tasks
from aiaas.worker.celery_app import PREDICT_QUEUE
from aiaas.worker.context import WorkerContext, build_context

_lock = threading.Lock()
_ctx: WorkerContext | None = None
_redis: redis.Redis | None = None
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
            _ctx = build_context(get_settings(), metrics=metrics, schedule_webhook=_schedule)
        return _ctx


def _replies() -> redis.Redis:
    global _redis
    with _lock:
        if _redis is None:
            settings = get_settings()
            assert settings.broker_url
            _redis = redis.Redis.from_url(settings.broker_url)
        return _redis


def _schedule(job_id: str, delay_s: float) -> None:
    current_app.send_task(
        "aiaas.deliver_webhook", args=[job_id], queue=PREDICT_QUEUE, countdown=max(delay_s, 0)
    )


@shared_task(name="aiaas.predict_batch", acks_late=False, ignore_result=True)
def predict_batch(spec: dict[str, Any], inputs: str, reply_to: str, batch_id: str) -> None:
    """One forward pass for a batch the gateway assembled; the reply goes to ``reply_to``."""
    ctx = context()
    start = time.perf_counter()
    try:
        batch = wire.unpack_array(inputs)
        outputs = ctx.runtime(ServingSpec.from_dict(spec)).predict(batch)
        compute = time.perf_counter() - start
        ctx.metrics.batch_size.observe(int(batch.shape[0]))
        ctx.metrics.prediction_latency.labels("compute").observe(compute)
        message = wire.reply_ok(batch_id, outputs, compute)
    except Exception as exc:
        message = wire.reply_error(batch_id, f"{type(exc).__name__}: {exc}")
    client = _replies()
    pipe = client.pipeline(transaction=False)
    pipe.rpush(reply_to, message)
    pipe.expire(reply_to, wire.REPLY_TTL_S)
    pipe.execute()


@shared_task(name="aiaas.run_prediction_job", acks_late=True, reject_on_worker_lost=True)
def run_prediction_job(job_id: str) -> str:
    return tasks.run_prediction_job(context(), job_id)


@shared_task(name="aiaas.deliver_webhook", acks_late=True, reject_on_worker_lost=True)
def deliver_webhook(job_id: str) -> bool:
    return tasks.deliver_webhook(context(), job_id)


@shared_task(name="aiaas.run_training", acks_late=True, reject_on_worker_lost=True)
def run_training(training_id: str) -> str:
    return training_tasks.run_training(context(), training_id)
