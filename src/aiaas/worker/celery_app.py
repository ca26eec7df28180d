"""The Celery application, built from the settings; ``worker.tasks.register`` adds a task per
kind of job the table it is handed names (``aiaas.tasks.JOB_KINDS``).

Queues: ``predict`` (sync batches, async jobs, webhook deliveries) and ``training``. Async jobs
are acknowledged late and rejected back to the queue when their worker dies, so a SIGKILLed
worker's job is delivered again; the job row decides whether there is anything left to do.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from aiaas.config import Settings
from aiaas.jobs import PREDICT_QUEUE, QUEUES


def create_celery(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ValueError("AIAAS_BROKER_URL is not set: the distributed mode needs a broker")
    app = Celery("aiaas", broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        # Results travel on reply lists of their own (see dispatch.celery), never a backend.
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=PREDICT_QUEUE,
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.broker_timeout_s,
        broker_transport_options={
            # An unacknowledged job comes back after this long if its worker vanished.
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "socket_timeout": settings.broker_timeout_s,
            "socket_connect_timeout": settings.broker_timeout_s,
        },
        task_publish_retry=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
    )
    return app
