"""What task code needs in whichever process runs it (a Celery worker, or the gateway in
embedded mode), built once per process from the settings.

Embedded mode builds one inside the gateway; a Celery worker builds one per process after fork
(``worker_process_init``), so no database engine or CUDA context crosses a fork.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.metering.meter import UsageMeter
from aiaas.metrics import Metrics
from aiaas.ml.limits import configure_limits
from aiaas.serving.cache import RuntimeCache
from aiaas.serving.device import select_device
from aiaas.serving.runtime import ModelRuntime
from aiaas.serving.spec import ServingSpec
from aiaas.storage import ArtifactStore, open_store
from aiaas.tracing import Tracing

MB = 1024 * 1024

# (job id, delay in seconds): deliver the job's webhook after the delay.
WebhookScheduler = Callable[[str, float], None]


@dataclass
class WorkerContext:
    settings: Settings
    database: Database
    store: ArtifactStore
    device: torch.device
    runtimes: RuntimeCache
    metrics: Metrics
    schedule_webhook: WebhookScheduler
    # Set when the process shuts down: long tasks (trainings) stop at their next step and
    # leave their row to be resumed from its checkpoint.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Counts the async jobs and trainings this process finishes (the gateway's own meter in
    # embedded mode); flushed to the usage table by whoever owns the process.
    usage: UsageMeter = field(default_factory=UsageMeter)
    # The worker's spans, when AIAAS_OTEL_ENDPOINT is set (a worker process's context only).
    tracing: Tracing | None = None

    def runtime(self, spec: ServingSpec) -> ModelRuntime:
        runtime: ModelRuntime = self.runtimes.get(spec)
        return runtime


def build_context(
    settings: Settings,
    *,
    metrics: Metrics,
    schedule_webhook: WebhookScheduler,
    database: Database | None = None,
    store: ArtifactStore | None = None,
    usage: UsageMeter | None = None,
    tracing: Tracing | None = None,
) -> WorkerContext:
    configure_limits(
        max_activation_mb=settings.max_activation_mb,
        max_sequence_length=settings.max_sequence_length,
    )
    database = database or Database.from_url(
        settings.resolved_database_url, timeout_s=settings.db_timeout_s
    )
    store = store or open_store(settings.resolved_artifacts_url)
    device = select_device(settings.device)
    metrics.worker_device.labels(str(device)).set(1)

    def load(spec: ServingSpec) -> ModelRuntime:
        runtime = ModelRuntime.load(
            spec,
            store.get_bytes(spec.weights),
            device=device,
            warmup=settings.worker_warmup,
            trace=settings.worker_trace,
        )
        # A loaded model is long-lived: keep its objects out of every later collection, as
        # `aiaas serve` does for start-up objects (full passes over them made the p99 tail).
        gc.freeze()
        return runtime

    runtimes = RuntimeCache(
        int(settings.worker_cache_mb * MB),
        load,
        on_hit=metrics.model_cache_hits.inc,
        on_miss=metrics.model_cache_misses.inc,
        on_bytes=metrics.model_cache_bytes.set,
    )
    return WorkerContext(
        settings=settings,
        database=database,
        store=store,
        device=device,
        runtimes=runtimes,
        metrics=metrics,
        schedule_webhook=schedule_webhook,
        usage=usage or UsageMeter(),
        tracing=tracing,
    )
