"""Tracing on a gateway (a span per request, the lanes' included, continuing a client's trace)
and on a worker (a batch's span linked to its requests' spans, with the queue wait and the
forward), seen by OpenTelemetry's in-memory exporter. The distributed path, across Redis and a
worker process, is in tests/integration/test_request_tracing.py."""

from __future__ import annotations

import time

import numpy as np
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from aiaas.config import Settings
from aiaas.context import build_context
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.metrics import Metrics
from aiaas.ml.weights import save_safetensors
from aiaas.serving import wire
from aiaas.tracing import Tracing, traceparent
from aiaas.worker.batches import run_batch_message
from tests.factories import MLP_CONFIG, api_key, publish, register, seeded_module
from tests.serving.helpers import make_spec


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def test_tracing_is_off_without_an_endpoint() -> None:
    assert Tracing.from_endpoint(None, service="aiaas-gateway") is None
    assert Tracing.from_endpoint("", service="aiaas-gateway") is None


def test_a_span_per_request_on_every_path(
    settings: Settings, db: Database, traced: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = traced
    app = create_app(settings, database=db, tracing=tracing)
    with TestClient(app, raise_server_exceptions=False) as client:
        owner = register(client)
        model = publish(client, owner)
        key = api_key(client, owner, ["predict"])["key"]
        row = np.zeros((1, MLP_CONFIG["input_dim"])).tolist()
        client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        answered = client.post(
            f"/v1/models/{model.name}/predict",
            json={"inputs": row},
            headers={
                "Authorization": f"Bearer {key}",
                "X-Request-ID": "traced-1",
                "traceparent": f"00-{client_trace}-00f067aa0ba902b7-01",
            },
        )
        assert answered.status_code == 200
        assert client.get(f"/v2/models/{model.name}", headers={"Authorization": f"Bearer {key}"})
        assert client.get("/v1/nowhere").status_code == 404
    finished = exporter.get_finished_spans()
    (predict,) = by_name(finished, "POST /v1/models/{name}/predict")
    assert predict.kind is SpanKind.SERVER
    assert predict.attributes is not None
    assert predict.attributes["aiaas.request_id"] == "traced-1"
    assert predict.attributes["http.response.status_code"] == 200
    # The client's trace goes on: same trace id, its span as the parent.
    assert f"{predict.context.trace_id:032x}" == client_trace
    assert predict.parent is not None
    assert f"{predict.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert by_name(finished, "GET /v2/models/{name}")
    assert by_name(finished, "POST /v1/models")
    (unmatched,) = by_name(finished, "GET <unmatched>")
    assert unmatched.attributes is not None
    assert unmatched.attributes["http.response.status_code"] == 404


def test_a_batch_span_links_every_request_it_carries(
    settings: Settings, db: Database, traced: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = traced
    requests = [tracing.tracer.start_span(f"request {i}") for i in range(3)]
    for span in requests:
        span.end()
    carried = [traceparent(span) for span in requests]
    ctx = build_context(
        settings, metrics=Metrics(), schedule_webhook=lambda *_: None, database=db, tracing=tracing
    )
    stored = ctx.store.put_bytes(save_safetensors(seeded_module("mlp", MLP_CONFIG)))
    spec = make_spec("mlp", MLP_CONFIG, weights=stored.sha256)
    sent = time.time() - 0.05
    raw = wire.pack_batch(
        spec.to_dict(),
        np.zeros((3, MLP_CONFIG["input_dim"]), dtype=np.float32),
        reply_to="aiaas:replies:test",
        batch_id="b1",
        sent=sent,
        deadline=sent + 30,
        request_ids=["r0", "r1", "r2"],
        traces=[t for t in carried if t is not None],
    )
    answer = run_batch_message(ctx, raw)
    assert answer is not None
    assert wire.read_reply(answer[1]).outputs is not None
    finished = exporter.get_finished_spans()
    (batch,) = by_name(finished, "aiaas batch")
    assert batch.kind is SpanKind.CONSUMER
    linked = {link.context.span_id for link in batch.links}
    assert linked == {span.get_span_context().span_id for span in requests}
    assert batch.attributes is not None
    assert list(batch.attributes["aiaas.request_ids"]) == ["r0", "r1", "r2"]
    (wait,) = by_name(finished, "queue wait")
    (forward,) = by_name(finished, "forward")
    for child in (wait, forward):
        assert child.parent is not None
        assert child.parent.span_id == batch.context.span_id
    assert wait.start_time is not None
    assert wait.end_time is not None
    # The wait starts at the gateway's send and lasts until the worker took the message.
    assert wait.start_time == int(sent * 1e9)
    assert wait.end_time - wait.start_time >= 40_000_000
    assert forward.start_time is not None
    assert forward.start_time >= wait.end_time
