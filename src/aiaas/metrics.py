"""Prometheus metrics on the platform's own registry.

Every metric object is made here, per :class:`Metrics` instance, so two apps in one process (tests)
never collide in the global registry and nothing is registered at import time.
"""

from __future__ import annotations

import hmac
import platform
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
    make_wsgi_app,
)

from aiaas import __version__
from aiaas.errors import PROBLEM_CONTENT_TYPE, Unauthenticated

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
        self.shadow_predictions = Counter(
            "aiaas_shadow_predictions",
            "Copies of requests run on an alias's shadow version, by outcome (succeeded, failed, "
            "dropped when too many were in flight).",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.shadow_rows = Counter(
            "aiaas_shadow_rows",
            "Rows a classifier's shadow version predicted alike (agree) or not (disagree) with "
            "the version that answered.",
            ["model", "version", "result"],
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
        self.worker_heartbeat = Gauge(
            "aiaas_worker_heartbeat_timestamp_seconds",
            "Unix time of the last turn of a worker's loop (the sync batch loop turns at least "
            "once a second): old while the process is up means the worker is stuck.",
            ["loop"],
            registry=self.registry,
        )
        self.worker_last_handled = Gauge(
            "aiaas_worker_last_handled_timestamp_seconds",
            "Unix time a worker last finished a sync batch, an explanation or a job, by kind.",
            ["kind"],
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
        # Which release runs where (a roll-out half done shows two), and what each process
        # costs: process_cpu_seconds_total, process_resident_memory_bytes, open fds...
        self.build = Info(
            "aiaas_build", "The running release of aiaas and its Python.", registry=self.registry
        )
        self.build.info({"version": __version__, "python": platform.python_version()})
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def scrape_allowed(authorization: str | None, token: str | None) -> bool:
    """Whether a scrape with this ``Authorization`` header may read the metrics: always without
    a token, else only with ``Bearer <token>`` (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _guarded(app: WSGIApp, token: str | None) -> WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not scrape_allowed(environ.get("HTTP_AUTHORIZATION"), token):
            problem = Unauthenticated("Scrapes need the metrics token.")
            start_response(
                "401 Unauthorized",
                [("Content-Type", PROBLEM_CONTENT_TYPE), *problem.headers.items()],
            )
            return [orjson.dumps(problem.to_problem())]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """The metrics of one registry on a port of their own (``AIAAS_METRICS_PORT``, a worker's
    ``--metrics-port``), so the public port never shows them; behind the scrape token when
    one is set."""

    def __init__(
        self, registry: CollectorRegistry, *, host: str, port: int, token: str | None
    ) -> None:
        self._server = make_server(
            host,
            port,
            _guarded(make_wsgi_app(registry), token),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aiaas-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
