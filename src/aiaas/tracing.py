"""OpenTelemetry tracing, off unless ``AIAAS_OTEL_ENDPOINT`` names an OTLP/HTTP collector
(``pip install 'aiaas[otel]'``).

Spans:

- at a gateway, one per HTTP request (kind SERVER, the prediction lanes' included), named
  ``METHOD route-template``; it continues the client's W3C ``traceparent`` when one is sent;
- on a worker, one per sync batch, explanation or async job (kind CONSUMER), with the time the
  message waited in the queue (``queue wait``) and the model's run (``forward``) as children.
  A batch serves many requests: its span is *linked* to the span of every request it carries,
  whose ``traceparent`` travels in the message (``serving.wire``, the task's headers).

With tracing off nothing of OpenTelemetry is imported, and a request pays one ``is None`` test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiaas import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Span
    from starlette.types import Scope

_TRACE_HEADERS = (b"traceparent", b"tracestate")


def traceparent(span: Any) -> str | None:
    """``span``'s W3C traceparent (version 00), to carry in a message; None for no span."""
    if span is None:
        return None
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class Tracing:
    """The spans of one process (a gateway or a worker), sent by ``provider``'s processors."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("aiaas", __version__)
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_endpoint(cls, endpoint: str | None, *, service: str) -> Tracing | None:
        """Spans batched to the OTLP/HTTP collector at ``endpoint`` (its ``/v1/traces`` URL),
        as ``service``; None when no endpoint is set."""
        if not endpoint:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise RuntimeError(
                "AIAAS_OTEL_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'aiaas[otel]'"
            ) from exc
        resource = Resource.create({"service.name": service, "service.version": __version__})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider)

    def close(self) -> None:
        """Send what is buffered, then stop."""
        self.provider.shutdown()

    # The gateway's side.

    def start_request(self, scope: Scope) -> Span:
        from opentelemetry.trace import SpanKind

        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        parent = self._propagator.extract(carrier) if carrier else None
        return self.tracer.start_span(scope["method"], context=parent, kind=SpanKind.SERVER)

    def end_request(
        self, span: Span, method: str, route: str, status: int, request_id: str
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.update_name(f"{method} {route}")
        span.set_attribute("http.request.method", method)
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("aiaas.request_id", request_id)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # The worker's side.

    def links(self, traceparents: Sequence[str | None]) -> list[Link]:
        from opentelemetry.trace import Link, get_current_span

        links = []
        for traceparent in traceparents:
            if not traceparent:
                continue
            context = self._propagator.extract({"traceparent": traceparent})
            span_context = get_current_span(context).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
        return links

    @contextlib.contextmanager
    def consume(
        self,
        name: str,
        *,
        traceparents: Sequence[str | None],
        sent: float,
        received: float,
        attributes: Mapping[str, Any],
    ) -> Iterator[Span]:
        """A CONSUMER span for one message, from ``sent`` (the producer's clock, Unix seconds)
        to the end of the block, linked to ``traceparents``; its ``queue wait`` child spans
        ``sent`` to ``received``. Run the model inside ``forward(span)``."""
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        start_ns = int(sent * 1e9)
        span = self.tracer.start_span(
            name,
            kind=SpanKind.CONSUMER,
            links=self.links(traceparents),
            start_time=start_ns,
            attributes=dict(attributes),
        )
        wait = self.tracer.start_span(
            "queue wait", context=set_span_in_context(span), start_time=start_ns
        )
        wait.end(end_time=int(received * 1e9))
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            span.end()

    @contextlib.contextmanager
    def forward(self, parent: Span) -> Iterator[Span]:
        from opentelemetry.trace import set_span_in_context

        with self.tracer.start_as_current_span(
            "forward", context=set_span_in_context(parent)
        ) as span:
            yield span
