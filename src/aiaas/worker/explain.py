"""Explanations on a worker: the Celery task ``serving.wire.EXPLAIN_TASK`` on the ``predict``
queue. It takes one request's rows, explains them with the runtime from this process's cache
(the one its sync batches use) and pushes the answer onto the asking gateway's reply list, as
the batch consumer does: there is no result backend.

A message past its deadline is dropped: its gateway has answered 504 already. Nothing is
redelivered either (a gateway whose request was lost answers 504 and the client retries).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from aiaas.context import WorkerContext
from aiaas.ml.explain import ExplainOptions
from aiaas.serving import wire
from aiaas.serving.spec import ServingSpec
from aiaas.worker.batches import awaited, consuming, forward, handled, push_reply

log = logging.getLogger(__name__)
_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def run_explain_message(ctx: WorkerContext, message: Any) -> tuple[str, bytes] | None:
    """The reply to one explain message and where it goes; None when nobody waits for it."""
    try:
        rows, options = wire.unpack_explain(message)
    except ValueError as exc:
        log.warning("dropped an unreadable explain message: %s", exc)
        return None
    now = time.time()
    if not awaited(rows, now):
        return None
    queued = max(now - rows.sent, 0.0)
    with consuming(ctx, "explain", rows, received=now) as span:
        start = time.perf_counter()
        try:
            with forward(ctx, span):
                runtime = ctx.runtime(ServingSpec.from_dict(rows.spec))
                explanation = runtime.explain(rows.inputs, ExplainOptions.from_dict(options))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            handled(ctx, "explain", rows, queued, time.perf_counter() - start, error=reason)
            return rows.reply_to, wire.reply_error(rows.batch_id, reason)
    compute = time.perf_counter() - start
    handled(ctx, "explain", rows, queued, compute)
    return rows.reply_to, wire.reply_explained(rows.batch_id, explanation, compute)


def explain_task(context: Callable[[], WorkerContext]) -> Callable[[dict[str, Any]], None]:
    """The task function, on the worker process's context."""

    def explain(message: dict[str, Any]) -> None:
        ctx = context()
        answer = run_explain_message(ctx, message)
        if answer is None:
            return
        assert ctx.settings.broker_url, "explain tasks run in distributed mode only"
        push_reply(_client(ctx.settings.broker_url), *answer)

    return explain


def _client(url: str) -> redis.Redis:
    # One per process, made on first use: after any fork, never inherited from a parent.
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url)
        return client
