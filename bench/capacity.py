"""How many rows a second one prediction worker serves, end to end over Redis: the capacity
planning figure for workers (docs/operations.md, "Capacity planning").

One real ``aiaas worker --queues predict`` (one torch thread, pinned to core 0) is fed sync
batch messages straight onto its batch list, as gateways send them (``serving.wire``), with a
few always waiting so that it never idles; this process (core 1) packs them and reads the
replies. For each model and batch size: rows/s and batches/s through the worker, and the share
of the worker's time in the forward pass itself (the replies' ``compute_s``): the rest is Redis,
the message's decoding and encoding and the worker's loop.

    python bench/capacity.py [--seconds 5] [--json out.json]

Needs the local Redis (db 11, flushed) and nothing else: the worker's database is a SQLite file
it never touches on this path.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiaas.jobs import PREDICT_QUEUE
from aiaas.ml.architectures import build_model, input_spec, parse_config
from aiaas.ml.weights import save_safetensors
from aiaas.serving import wire
from aiaas.serving.spec import ServingSpec
from aiaas.storage import open_store
from bench.gpu import MODELS
from bench.layout import SERVER_CPU, VENV_BIN, log
from bench.servers import PLATFORM_REDIS_DB, REDIS, Fleet, platform_env, upgrade_database

BATCHES = (1, 32, 256)
# Messages kept waiting on the list: the worker always finds the next one.
IN_FLIGHT = 4


def spec_for(store_url: str, architecture: str, config: dict[str, Any]) -> dict[str, Any]:
    """The model's weights put in the worker's store, and its spec as a gateway sends it."""
    parsed = parse_config(architecture, config, max_parameters=10**9)
    module = build_model(architecture, parsed).eval()
    stored = open_store(store_url).put_bytes(save_safetensors(module))
    return ServingSpec(
        weights=stored.sha256,
        architecture=architecture,
        config=config,
        task="classification",
        labels=None,
        input_shape=input_spec(architecture, parsed).shape,
    ).to_dict()


def run(
    client: redis.Redis, spec: dict[str, Any], rows: np.ndarray, seconds: float
) -> dict[str, float]:
    reply_to = f"{wire.REPLY_PREFIX}capacity-{uuid.uuid4().hex}"
    key = wire.batch_key(PREDICT_QUEUE)

    def send() -> None:
        now = time.time()
        client.rpush(
            key,
            wire.pack_batch(
                spec,
                rows,
                reply_to=reply_to,
                batch_id=uuid.uuid4().hex,
                sent=now,
                deadline=now + 60,
                request_ids=[uuid.uuid4().hex[:20] for _ in range(len(rows))],
            ),
        )

    def receive() -> wire.Reply:
        item = client.blpop([reply_to], timeout=60)
        if item is None:
            raise RuntimeError("the worker did not answer within 60 s")
        reply = wire.read_reply(item[1])
        if reply.outputs is None:
            raise RuntimeError(f"the worker failed the batch: {reply.error}")
        return reply

    # Warm up: the worker loads the model and prepares its graph on the first batches.
    for _ in range(3):
        send()
        receive()
    for _ in range(IN_FLIGHT):
        send()
    batches, compute, start = 0, 0.0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or batches < 20:
        reply = receive()
        send()
        batches += 1
        compute += reply.compute_s
    for _ in range(IN_FLIGHT):
        receive()
    return {
        "rows_s": batches * len(rows) / elapsed,
        "batches_s": batches / elapsed,
        "forward_share": compute / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Seconds per figure.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    broker = f"{REDIS}/{PLATFORM_REDIS_DB}"
    client = redis.Redis.from_url(broker)
    client.flushdb()
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="aiaas-capacity-logs-")))
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="aiaas-capacity-") as tmp:
            env, home = platform_env(
                Path(tmp),
                "worker",
                {
                    "AIAAS_BROKER_URL": broker,
                    "AIAAS_DATABASE_URL": f"sqlite:///{Path(tmp) / 'aiaas.db'}",
                    "AIAAS_ARTIFACTS_URL": str(Path(tmp) / "artifacts"),
                },
            )
            upgrade_database(env, home)
            worker = fleet.start(
                "capacity-worker",
                [str(VENV_BIN / "aiaas"), "worker", "--queues", "predict"],
                env=env,
                cwd=home,
                cpu=SERVER_CPU,
            )
            deadline = time.monotonic() + 120
            while b"ready." not in worker.log_path.read_bytes():
                if not worker.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not start:\n{worker.tail()}")
                time.sleep(0.2)
            for name, (architecture, config, shape) in MODELS.items():
                spec = spec_for(env["AIAAS_ARTIFACTS_URL"], architecture, config)
                for batch in BATCHES:
                    rng = np.random.default_rng(batch)
                    rows = rng.standard_normal((batch, *shape), dtype=np.float32)
                    figures = run(client, spec, rows, args.seconds)
                    results.append({"model": name, "batch": batch, **figures})
                    log(
                        f"{name} batch {batch}: {figures['rows_s']:,.0f} rows/s, "
                        f"{figures['batches_s']:,.0f} batches/s, "
                        f"forward {figures['forward_share']:.0%} of the time"
                    )
    finally:
        fleet.stop()
        client.flushdb()
        client.close()
    print("\n| model | rows per batch | rows/s | batches/s | forward share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['model']} | {r['batch']} | {r['rows_s']:,.0f} | {r['batches_s']:,.0f} "
            f"| {r['forward_share']:.0%} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
