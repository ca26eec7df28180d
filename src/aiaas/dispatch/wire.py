"""How batches and their results travel between gateway and workers over Redis.

A sync batch is one Celery task carrying the spec, the inputs as base64 .npy and where to reply;
the worker pushes the reply onto the gateway's own Redis list, so results never go through a
result backend that the gateway would have to poll.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import orjson

REPLY_PREFIX = "aiaas:replies:"
REPLY_TTL_S = 120


def pack_array(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack_array(text: str) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)
    return array


def reply_ok(batch_id: str, outputs: np.ndarray, compute_s: float) -> bytes:
    return orjson.dumps(
        {"id": batch_id, "ok": True, "outputs": pack_array(outputs), "compute_s": compute_s}
    )


def reply_error(batch_id: str, error: str) -> bytes:
    return orjson.dumps({"id": batch_id, "ok": False, "error": error})


def read_reply(raw: bytes) -> dict[str, Any]:
    reply: dict[str, Any] = orjson.loads(raw)
    return reply
