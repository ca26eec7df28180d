"""The worker's batch consumer thread, against the local Redis."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace
from typing import cast

import redis

from aiaas.context import WorkerContext
from aiaas.metrics import Metrics
from aiaas.serving import wire
from aiaas.serving.mode import in_serving_mode
from aiaas.worker.batches import BatchConsumer


def test_the_consumer_thread_runs_batches_in_serving_mode(redis_url: str) -> None:
    seen: list[bool] = []
    asked = threading.Event()
    metrics = Metrics()

    def context() -> WorkerContext:
        # Asked for on the consumer thread when it starts (its heartbeat) and as each popped
        # message is run; an unreadable message is dropped before the context is used.
        seen.append(in_serving_mode())
        if len(seen) > 1:
            asked.set()
        return cast(WorkerContext, SimpleNamespace(metrics=metrics))

    queue = f"test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    consumer = BatchConsumer(context, redis_url, queue)
    consumer.start()
    try:
        client.rpush(wire.batch_key(queue), b"not a batch")
        assert asked.wait(10)
    finally:
        consumer.stop(timeout=10)
        client.delete(wire.batch_key(queue))
        client.close()
    assert seen == [True, True]
    assert not in_serving_mode()
    # The loop's heartbeat moved while it ran.
    beat = metrics.registry.get_sample_value(
        "aiaas_worker_heartbeat_timestamp_seconds", {"loop": "batches"}
    )
    assert beat is not None
    assert time.time() - 30 < beat <= time.time()
