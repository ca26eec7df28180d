"""How sync batches and their results travel between gateways and workers over Redis.

A sync batch is one message on the ``predict`` queue's batch list: a JSON header (the spec,
where to reply, the batch id, its deadline, the inputs' shape) and the inputs as raw float32
bytes (.npy's header parser costs more than the rest of the message). A worker pops
it, runs it and pushes the reply onto the gateway's own reply list, so results never go through
a result backend that the gateway would have to poll.

Sync batches skip Celery's message protocol on purpose: nobody redelivers them (a gateway whose
batch was lost answers 504 at its deadline and the client retries), so acknowledgements,
unacked-message bookkeeping and task tracing would only add Redis round trips and milliseconds
to every batch. Async jobs and trainings, which must survive a worker's death, stay Celery tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

REPLY_PREFIX = "aiaas:replies:"
BATCH_PREFIX = "aiaas:batches:"
REPLY_TTL_S = 120
# Every message: <JSON header> SEPARATOR <float32 bytes, C order, little-endian>; JSON never
# holds a raw newline.
SEPARATOR = b"\n"


def batch_key(queue: str) -> str:
    """The Redis list holding the sync batches of ``queue``."""
    return f"{BATCH_PREFIX}{queue}"


@dataclass(frozen=True, slots=True)
class BatchMessage:
    spec: dict[str, Any]
    inputs: np.ndarray
    reply_to: str
    batch_id: str
    # Unix times: when the gateway sent the batch, and after when nobody waits for it.
    sent: float
    deadline: float


@dataclass(frozen=True, slots=True)
class Reply:
    batch_id: str
    outputs: np.ndarray | None
    error: str | None
    compute_s: float = 0.0


def pack_batch(
    spec: dict[str, Any],
    inputs: np.ndarray,
    *,
    reply_to: str,
    batch_id: str,
    sent: float,
    deadline: float,
) -> bytes:
    header = {
        "spec": spec,
        "reply_to": reply_to,
        "id": batch_id,
        "sent": sent,
        "deadline": deadline,
    }
    return _pack(header, inputs)


def unpack_batch(raw: bytes) -> BatchMessage:
    """Raises ``ValueError`` for a message that is not a batch."""
    header, array = _split(raw)
    try:
        return BatchMessage(
            spec=dict(header["spec"]),
            inputs=array,
            reply_to=str(header["reply_to"]),
            batch_id=str(header["id"]),
            sent=float(header["sent"]),
            deadline=float(header["deadline"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a batch message: {exc}") from None


def reply_ok(batch_id: str, outputs: np.ndarray, compute_s: float) -> bytes:
    return _pack({"id": batch_id, "ok": True, "compute_s": compute_s}, outputs)


def reply_error(batch_id: str, error: str) -> bytes:
    return orjson.dumps({"id": batch_id, "ok": False, "error": error}) + SEPARATOR


def read_reply(raw: bytes) -> Reply:
    """Raises ``ValueError`` for a message that is not a reply."""
    header, array = _split(raw)
    try:
        if header["ok"]:
            if array is None:
                raise ValueError("a successful reply without outputs")
            return Reply(str(header["id"]), array, None, float(header["compute_s"]))
        return Reply(str(header["id"]), None, str(header["error"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a reply: {exc}") from None


_FLOAT32 = np.dtype("<f4")


def _pack(header: dict[str, Any], array: np.ndarray) -> bytes:
    data = np.ascontiguousarray(array, dtype=_FLOAT32)
    header["shape"] = data.shape
    return orjson.dumps(header) + SEPARATOR + data.tobytes()


def _split(raw: bytes) -> tuple[dict[str, Any], Any]:
    head, separator, body = raw.partition(SEPARATOR)
    if not separator:
        raise ValueError("no header separator")
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"unreadable header: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    shape = header.get("shape")
    if shape is None:
        return header, None
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad shape {shape!r}")
    if len(body) != _FLOAT32.itemsize * int(np.prod(shape)):
        raise ValueError(f"{len(body)} bytes for shape {shape}")
    # A read-only view on the message; the runtime copies it where it must.
    return header, np.frombuffer(body, dtype=_FLOAT32).reshape(shape)
