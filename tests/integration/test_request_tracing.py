"""Following one request across the gateway and a real `aiaas worker` process (distributed mode):
the client's X-Request-ID in both processes' JSON log lines, and with tracing on, the worker's
spans (sent over OTLP/HTTP to a collector this test runs on loopback) linked to the gateway's
request spans (seen by OpenTelemetry's in-memory exporter)."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiaas.main import create_app
from aiaas.tracing import Tracing
from tests.factories import publish, register, wait_job, wait_until
from tests.helpers import captured_logs, json_lines
from tests.integration.conftest import Deployment

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


class Collector:
    """An OTLP/HTTP traces endpoint on loopback that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ProtoSpan] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list[ProtoSpan]:
        with self.lock:
            return [span for span in self.spans if span.name == name]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


@pytest.fixture(scope="module")
def traced_worker(
    deployment: Deployment, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A worker of the deployment logging JSON and sending its spans to ``collector``."""
    env = dict(deployment.env)
    deployment.env.update(
        AIAAS_LOG_FORMAT="json",
        AIAAS_OTEL_ENDPOINT=collector.url,
        # Spans leave every 100 ms rather than every 5 s.
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        process = deployment.start_worker(tmp_path_factory.mktemp("traced"))
    finally:
        deployment.env.clear()
        deployment.env.update(env)
    deployment.wait_ready(process)
    return process, deployment.logs[deployment.workers.index(process)]


def test_a_request_id_and_its_spans_cross_the_broker(
    deployment: Deployment,
    traced_worker: tuple[subprocess.Popen[bytes], Path],
    collector: Collector,
    traced: tuple[Tracing, InMemorySpanExporter],
) -> None:
    _, worker_log = traced_worker
    tracing, exporter = traced
    gateway_app = create_app(deployment.settings, tracing=tracing)
    with captured_logs() as captured, TestClient(gateway_app) as gateway:
        owner = register(gateway)
        name = publish(gateway, owner).name
        sync_id = f"sync-{uuid.uuid4().hex[:12]}"
        answered = gateway.post(
            f"/v1/models/{name}/predict",
            json={"inputs": ROWS.tolist()},
            headers={**owner.headers, "X-Request-ID": sync_id},
        )
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-request-id"] == sync_id
        job_id_header = f"job-{uuid.uuid4().hex[:12]}"
        job = gateway.post(
            "/v1/predictions",
            json={"model": name, "inputs": ROWS.tolist()},
            headers={**owner.headers, "X-Request-ID": job_id_header},
        ).json()
        assert wait_job(gateway, job["id"], owner.headers)["status"] == "succeeded"

    # The gateway's lines.
    gateway_lines = json_lines(captured.text())
    access = {
        line["request_id"]: line for line in gateway_lines if line["logger"] == "aiaas.access"
    }
    assert access[sync_id]["route"] == "/v1/models/{name}/predict"
    assert access[sync_id]["status"] == 200
    assert access[sync_id]["account_id"] == owner.id
    assert access[job_id_header]["route"] == "/v1/predictions"

    # The worker's lines: the batch names the sync request, the job's line its request.
    def worker_lines() -> list[dict[str, Any]]:
        return json_lines(worker_log.read_text())

    def batch_line() -> dict[str, Any] | None:
        for line in worker_lines():
            if line.get("event") == "batch" and sync_id in line.get("request_ids", []):
                return line
        return None

    def job_line() -> dict[str, Any] | None:
        for line in worker_lines():
            if line.get("event") == "job" and line.get("job_id") == job["id"]:
                return line
        return None

    wait_until(batch_line, timeout=10, what="the worker's batch line")
    wait_until(job_line, timeout=10, what="the worker's job line")
    batch, job_done = batch_line(), job_line()
    assert batch is not None
    assert batch["outcome"] == "ok"
    assert batch["rows"] == len(ROWS)
    assert job_done is not None
    assert job_done["request_id"] == job_id_header
    assert job_done["outcome"] == "ok"
    assert job_done["task"] == "run_prediction_job"
    # Every worker line is JSON: the banner aside, nothing is written in another format.
    assert all(line["logger"] for line in worker_lines())

    # The spans: the gateway's request spans, and the worker's linked to them.
    finished = exporter.get_finished_spans()
    predict_span = only(finished, "POST /v1/models/{name}/predict")
    job_span = only(finished, "POST /v1/predictions")
    wait_until(
        lambda: collector.named("aiaas batch") and collector.named("aiaas job run_prediction_job"),
        timeout=15,
        what="the worker's spans at the collector",
    )
    batches = [
        span
        for span in collector.named("aiaas batch")
        if (predict_span.context.trace_id, predict_span.context.span_id) in links_of(span)
    ]
    assert len(batches) == 1, "one batch span links the sync request's span"
    (batch_span,) = batches
    assert batch_span.kind == ProtoSpan.SPAN_KIND_CONSUMER
    children = {span.name for span in collector.spans if span.parent_span_id == batch_span.span_id}
    assert children == {"queue wait", "forward"}
    (job_worker_span,) = collector.named("aiaas job run_prediction_job")
    assert (job_span.context.trace_id, job_span.context.span_id) in links_of(job_worker_span)


def only(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    (span,) = [span for span in finished if span.name == name]
    return span


def links_of(span: ProtoSpan) -> set[tuple[int, int]]:
    return {
        (int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"))
        for link in span.links
    }
