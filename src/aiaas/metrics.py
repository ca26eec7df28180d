"""Prometheus metrics on the platform's own registry.

Every metric object is made here, per :class:`Metrics` instance, so two apps in one process (tests)
never collide in the global registry and nothing is registered at import time.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "aiaas_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "aiaas_http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.predictions = Counter(
            "aiaas_predictions",
            "Predictions answered, by model, version and outcome.",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.prediction_latency = Histogram(
            "aiaas_prediction_latency_seconds",
            "Prediction time by stage: queue (waiting for a batch), compute (forward), total.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "aiaas_batch_size",
            "Examples (rows) in each forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "aiaas_queue_depth",
            "Jobs waiting in each queue: what an autoscaler scales workers on.",
            ["queue"],
            registry=self.registry,
        )
        self.jobs_in_flight = Gauge(
            "aiaas_jobs_in_flight",
            "Prediction requests and jobs being worked on in this process.",
            registry=self.registry,
        )
        self.model_cache_hits = Counter(
            "aiaas_model_cache_hits", "Loaded-model cache hits.", registry=self.registry
        )
        self.model_cache_misses = Counter(
            "aiaas_model_cache_misses", "Loaded-model cache misses (loads).", registry=self.registry
        )
        self.model_cache_bytes = Gauge(
            "aiaas_model_cache_bytes", "Bytes of loaded model weights.", registry=self.registry
        )
        self.worker_device = Gauge(
            "aiaas_worker_device",
            "1 for the device this process runs models on.",
            ["device"],
            registry=self.registry,
        )
        self.trainings = Counter(
            "aiaas_trainings",
            "Training jobs finished, by outcome.",
            ["status"],
            registry=self.registry,
        )
        self.training_epoch_seconds = Histogram(
            "aiaas_training_epoch_seconds",
            "Time of one training epoch, evaluation on the validation split included.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
            registry=self.registry,
        )
        self.trainings_running = Gauge(
            "aiaas_trainings_running",
            "Training jobs running in this process.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
