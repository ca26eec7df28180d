"""How sync batches and their results travel between gateways and workers over Redis.

A sync batch is one message on the ``predict`` queue's batch list: a JSON header (the spec,
where to reply, the batch id, its deadline, the inputs' shape) and the inputs as raw float32
bytes (.npy's header parser costs more than the rest of the message). A worker pops
it, runs it and pushes the reply onto the gateway's own reply list, so results never go through
a result backend that the gateway would have to poll.

Explanations (``EXPLAIN_TASK``) are Celery tasks on the ``predict`` queue instead: one request's
rows in one message of their own (never batched with others: each has its own method and
target), few enough that Celery's overhead does not matter. They reply on the same lists.

Sync batches skip Celery's message protocol on purpose: nobody redelivers them (a gateway whose
batch was lost answers 504 at its deadline and the client retries), so acknowledgements,
unacked-message bookkeeping and task tracing would only add Redis round trips and milliseconds
to every batch. Async jobs and trainings, which must survive a worker's death, stay Celery tasks.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from aiaas.ml.explain import Explanation

REPLY_PREFIX = "aiaas:replies:"
BATCH_PREFIX = "aiaas:batches:"
REPLY_TTL_S = 120
# The Celery task that explains one request's rows on a worker (``worker.explain``).
EXPLAIN_TASK = "aiaas.explain"
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
    # The requests the rows answer: their ids (for the worker's log lines) and, with tracing
    # on, their spans' W3C traceparents (for the worker's span links). Empty from a gateway
    # that sends none.
    request_ids: tuple[str, ...] = ()
    traces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    batch_id: str
    outputs: np.ndarray | None
    error: str | None
    compute_s: float = 0.0
    # What an explanation adds to its attributions (in ``outputs``): see ``reply_explained``.
    explained: dict[str, Any] | None = None


def pack_batch(
    spec: dict[str, Any],
    inputs: np.ndarray,
    *,
    reply_to: str,
    batch_id: str,
    sent: float,
    deadline: float,
    request_ids: Sequence[str] = (),
    traces: Sequence[str] = (),
) -> bytes:
    header = _route(spec, reply_to=reply_to, batch_id=batch_id, sent=sent, deadline=deadline)
    _add_requests(header, request_ids, traces)
    return _pack(header, inputs)


def unpack_batch(raw: bytes) -> BatchMessage:
    """Raises ``ValueError`` for a message that is not a batch."""
    header, array = _split(raw)
    try:
        return _batch(header, array)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a batch message: {exc}") from None


def _route(
    spec: dict[str, Any], *, reply_to: str, batch_id: str, sent: float, deadline: float
) -> dict[str, Any]:
    """What runs the rows, where the answer goes, and until when anyone waits for it."""
    return {"spec": spec, "reply_to": reply_to, "id": batch_id, "sent": sent, "deadline": deadline}


def _add_requests(
    header: dict[str, Any], request_ids: Sequence[str], traces: Sequence[str]
) -> None:
    if request_ids:
        header["requests"] = list(request_ids)
    if traces:
        header["traces"] = list(traces)


def _batch(header: dict[str, Any], inputs: np.ndarray) -> BatchMessage:
    return BatchMessage(
        spec=dict(header["spec"]),
        inputs=inputs,
        reply_to=str(header["reply_to"]),
        batch_id=str(header["id"]),
        sent=float(header["sent"]),
        deadline=float(header["deadline"]),
        request_ids=_strings(header.get("requests")),
        traces=_strings(header.get("traces")),
    )


def _strings(values: Any) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"not a list of strings: {values!r}")
    return tuple(values)


def pack_explain(
    spec: dict[str, Any],
    inputs: np.ndarray,
    options: dict[str, Any],
    *,
    reply_to: str,
    request_id: str,
    sent: float,
    deadline: float,
    request_ids: Sequence[str] = (),
    traces: Sequence[str] = (),
) -> dict[str, Any]:
    """The explain task's one argument: plain JSON for Celery's serializer, with the inputs as
    base64 float32 bytes (a JSON list of floats would be three times the size).
    ``request_id`` names the reply; ``request_ids`` the HTTP request it answers."""
    data = np.ascontiguousarray(inputs, dtype=_FLOAT32)
    route = _route(spec, reply_to=reply_to, batch_id=request_id, sent=sent, deadline=deadline)
    _add_requests(route, request_ids, traces)
    return {
        **route,
        "options": options,
        "shape": list(data.shape),
        "inputs": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def unpack_explain(message: Any) -> tuple[BatchMessage, dict[str, Any]]:
    """The rows to explain, as a batch message holds them, and the options; ``ValueError``
    for a message that is not an explain request."""
    try:
        raw = base64.b64decode(message["inputs"], validate=True)
        shape = _shape(message["shape"])
        if len(raw) != _FLOAT32.itemsize * int(np.prod(shape)):
            raise ValueError(f"{len(raw)} bytes for shape {shape}")
        inputs = np.frombuffer(raw, dtype=_FLOAT32).reshape(shape)
        return _batch(message, inputs), dict(message["options"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an explain message: {exc}") from None


def reply_explained(request_id: str, explanation: Explanation, compute_s: float) -> bytes:
    """The attributions as the reply's array; the outputs, targets and gap (a row or a few
    numbers per input row) in its header."""
    gap = explanation.completeness_gap
    explained = {
        "outputs": explanation.outputs.tolist(),
        "targets": explanation.targets.tolist(),
        "gap": None if gap is None else gap.tolist(),
    }
    header = {"id": request_id, "ok": True, "compute_s": compute_s, "explained": explained}
    return _pack(header, explanation.attributions)


def read_explanation(reply: Reply) -> Explanation:
    """The explanation a successful reply carries; ``ValueError`` if it carries none."""
    if reply.outputs is None or reply.explained is None:
        raise ValueError("the reply carries no explanation")
    try:
        gap = reply.explained["gap"]
        return Explanation(
            attributions=reply.outputs,
            outputs=np.asarray(reply.explained["outputs"], dtype=_FLOAT32),
            targets=np.asarray(reply.explained["targets"], dtype=np.int64),
            completeness_gap=None if gap is None else np.asarray(gap, dtype=_FLOAT32),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an explanation: {exc}") from None


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
            explained = header.get("explained")
            return Reply(
                str(header["id"]),
                array,
                None,
                float(header["compute_s"]),
                None if explained is None else dict(explained),
            )
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
    if header.get("shape") is None:
        return header, None
    shape = _shape(header["shape"])
    if len(body) != _FLOAT32.itemsize * int(np.prod(shape)):
        raise ValueError(f"{len(body)} bytes for shape {shape}")
    # A read-only view on the message; the runtime copies it where it must.
    return header, np.frombuffer(body, dtype=_FLOAT32).reshape(shape)


def _shape(shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"bad shape {shape!r}")
    return shape
