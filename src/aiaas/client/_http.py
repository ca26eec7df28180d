"""What the sync and async clients share: a call described as data, how its answer becomes a
value or an error, when it is tried again, and the server-sent event parser. The two clients
differ only in how they send and how they wait."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np

from aiaas.client.errors import AiaasError, RateLimited, ServiceUnavailable
from aiaas.client.types import TrainingEvent

T = TypeVar("T")

JSON = "application/json"
NPY = "application/x-npy"
# The statuses that say "not now": nothing was done, the same call may succeed later.
RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP call and how to read its answer. ``retryable``: the call may be sent again
    without doing its work twice (a read, a put, a delete, a prediction, or a create that
    carries an ``Idempotency-Key``)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = False

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return client.build_request(
            self.method,
            self.path,
            params=params or None,
            json=self.json,
            content=self.content,
            files=self.files,
            data=self.data,
            headers=dict(self.headers),
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter: try ``n`` waits up to
    ``min(max_backoff, backoff * 2**n)`` seconds, or what ``Retry-After`` asks when the
    server says (not waiting longer than ``max_retry_after``: past that, the error is raised).
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up."""
        if attempt >= self.retries:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            # A little jitter on top, so that clients told the same second do not all return
            # in the same instant.
            return retry_after + random.uniform(0, min(0.25, retry_after / 4 + 0.05))  # noqa: S311
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))  # noqa: S311


def retry_delay(
    policy: RetryPolicy, call: Call[Any], attempt: int, response: httpx.Response | None = None
) -> float | None:
    """Seconds to wait before sending ``call`` again after try ``attempt`` failed with
    ``response`` (None: no answer at all), or None to give up and raise."""
    if not call.retryable:
        return None
    if response is None:
        return policy.delay(attempt)
    if response.status_code not in RETRY_STATUSES:
        return None
    return policy.delay(attempt, retry_after(response))


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def error_for(response: httpx.Response) -> AiaasError:
    """The exception for an error answer, carrying its problem document (or a document made
    from the status when the body is not one, e.g. a proxy's HTML page)."""
    try:
        problem = response.json()
        if not isinstance(problem, dict):
            raise ValueError("not an object")
    except ValueError:
        problem = {
            "title": response.reason_phrase or f"HTTP {response.status_code}",
            "detail": response.text[:500] or response.reason_phrase,
            "status": response.status_code,
        }
    if "error" in problem and "title" not in problem:
        # The Open Inference Protocol's {"error": "..."}.
        problem = {"title": response.reason_phrase, "detail": problem["error"]}
    status = response.status_code
    if status == 429:
        return RateLimited(status, problem, retry_after(response))
    if status == 503:
        return ServiceUnavailable(status, problem)
    return AiaasError(status, problem)


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_for(response)
    return response


def path(*parts: str | int) -> str:
    """``/v1/...`` with each part percent-encoded: a model or alias name is never a path."""
    return "/v1/" + "/".join(quote(str(p), safe="") for p in parts)


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class EventParser:
    """Server-sent events (the WHATWG format) from lines, as they arrive."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def line(self, line: str) -> TrainingEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> TrainingEvent | None:
        if not self._data:
            self._event = "message"
            return None
        raw = "\n".join(self._data)
        event = TrainingEvent(
            id=int(self._id) if self._id and self._id.isdigit() else 0,
            event=self._event,
            data=json.loads(raw),
        )
        self._event, self._data = "message", []
        return event
