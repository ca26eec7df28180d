"""Sync batches on a worker: pop one from the queue's batch list, run it, reply.

Each worker process that serves the ``predict`` queue runs one consumer thread beside Celery's
own consumer (which takes async jobs and webhooks from the same queue name). Many workers pop
from one list, so Redis hands each batch to exactly one of them. See ``serving.wire`` for why
these batches are not Celery tasks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import redis

from aiaas.context import WorkerContext
from aiaas.logs import EventLine
from aiaas.serving import wire
from aiaas.serving.mode import serving_mode
from aiaas.serving.spec import ServingSpec

log = logging.getLogger(__name__)

# How long one BLPOP blocks: bounds how late a stop request is seen.
POLL_S = 1.0


# One line per batch or explanation handled, naming the requests it answered.
WORKER_LOG = EventLine("aiaas.worker")


def run_batch_message(ctx: WorkerContext, raw: bytes) -> tuple[str, bytes] | None:
    """The reply to one batch message and where it goes; None when nobody waits for it."""
    try:
        message = wire.unpack_batch(raw)
    except ValueError as exc:
        log.warning("dropped an unreadable batch message: %s", exc)
        return None
    now = time.time()
    if not awaited(message, now):
        return None
    queued = max(now - message.sent, 0.0)
    ctx.metrics.prediction_latency.labels("queue").observe(queued)
    with consuming(ctx, "batch", message, received=now) as span:
        start = time.perf_counter()
        try:
            with forward(ctx, span):
                outputs = ctx.runtime(ServingSpec.from_dict(message.spec)).predict(message.inputs)
        except Exception as exc:
            # Only this batch's requests fail, each with the worker's reason.
            reason = f"{type(exc).__name__}: {exc}"
            handled(ctx, "batch", message, queued, time.perf_counter() - start, error=reason)
            return message.reply_to, wire.reply_error(message.batch_id, reason)
    compute = time.perf_counter() - start
    ctx.metrics.batch_size.observe(int(message.inputs.shape[0]))
    ctx.metrics.prediction_latency.labels("compute").observe(compute)
    handled(ctx, "batch", message, queued, compute)
    return message.reply_to, wire.reply_ok(message.batch_id, outputs, compute)


def consuming(
    ctx: WorkerContext, kind: str, message: wire.BatchMessage, *, received: float
) -> AbstractContextManager[Any]:
    """With tracing on, the message's CONSUMER span (see ``aiaas.tracing``), linked to the
    spans of the requests it carries."""
    if ctx.tracing is None:
        return contextlib.nullcontext()
    return ctx.tracing.consume(
        f"aiaas {kind}",
        traceparents=message.traces,
        sent=message.sent,
        received=received,
        attributes={
            "aiaas.request_ids": list(message.request_ids),
            "aiaas.rows": int(message.inputs.shape[0]),
            "aiaas.architecture": str(message.spec.get("architecture", "")),
        },
    )


def forward(ctx: WorkerContext, span: Any) -> AbstractContextManager[Any]:
    """With tracing on, the ``forward`` span under ``span``."""
    if ctx.tracing is None or span is None:
        return contextlib.nullcontext()
    return ctx.tracing.forward(span)


def handled(
    ctx: WorkerContext,
    kind: str,
    message: wire.BatchMessage,
    queued_s: float,
    compute_s: float,
    *,
    error: str | None = None,
) -> None:
    """Log the message's line and move the worker's last-handled time."""
    ctx.metrics.worker_last_handled.labels(kind).set(time.time())
    WORKER_LOG(
        kind,
        request_ids=list(message.request_ids),
        rows=int(message.inputs.shape[0]),
        architecture=message.spec.get("architecture"),
        queue_ms=round(queued_s * 1000, 3),
        compute_ms=round(compute_s * 1000, 3),
        outcome="error" if error else "ok",
        **({"error": error} if error else {}),
    )


def awaited(message: wire.BatchMessage, now: float) -> bool:
    """Whether a gateway still waits for the message's answer: past its deadline it has
    answered 504 already, and computing it would only delay the next one (logged)."""
    if now <= message.deadline:
        return True
    late = now - message.deadline
    log.info("dropped message %s, %.1fs past its deadline", message.batch_id, late)
    return False


def consume(
    context: Callable[[], WorkerContext],
    client: redis.Redis,
    queue: str,
    stop: threading.Event,
) -> None:
    """Serve ``queue``'s sync batches until ``stop`` is set."""
    key = wire.batch_key(queue)
    # Moves on every turn of the loop (at least every POLL_S): a worker whose loop hangs, in a
    # forward or on the broker, is seen on its metrics while the process stays up.
    heartbeat = context().metrics.worker_heartbeat.labels("batches")
    while not stop.is_set():
        heartbeat.set(time.time())
        try:
            item = client.blpop([key], timeout=POLL_S)
        except (redis.RedisError, OSError) as exc:
            # The supervisor restarts the whole worker if the broker stays away; until then
            # keep trying without spinning.
            log.warning("batch list %s unreachable: %s", key, exc)
            stop.wait(0.5)
            continue
        if item is None:
            continue
        raw = item[1]
        assert isinstance(raw, bytes)  # the client does not decode responses
        answer = run_batch_message(context(), raw)
        if answer is None:
            continue
        push_reply(client, *answer)


def push_reply(client: redis.Redis, reply_to: str, reply: bytes) -> None:
    """Push ``reply`` onto a gateway's reply list; a broker that fails is logged, not raised
    (the gateway answers 504 at its deadline)."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.rpush(reply_to, reply)
        # A gateway that went away never reads its list: let Redis drop it.
        pipe.expire(reply_to, wire.REPLY_TTL_S)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("could not reply to %s: %s", reply_to, exc)


class BatchConsumer:
    """The consumer thread of one worker process."""

    def __init__(self, context: Callable[[], WorkerContext], broker_url: str, queue: str) -> None:
        self._stop = threading.Event()
        self._client = redis.Redis.from_url(broker_url)
        self._thread = threading.Thread(
            target=self._run,
            args=(context, self._client, queue, self._stop),
            name="aiaas-batches",
            daemon=True,
        )

    @staticmethod
    def _run(
        context: Callable[[], WorkerContext],
        client: redis.Redis,
        queue: str,
        stop: threading.Event,
    ) -> None:
        # The thread runs forward passes and broker I/O only: it stays in the state the
        # forwards need rather than entering it for each batch.
        with serving_mode():
            consume(context, client, queue, stop)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = POLL_S + 30) -> None:
        """Finish the batch in hand (its gateway is waiting for it), then return."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()
