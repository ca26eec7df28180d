"""What a failed call raises: the server's problem document, as an exception.

::

    AiaasError                 any answer of 4xx/5xx; ``.status``, ``.type``, ``.errors``
    ├── RateLimited (429)      ``.retry_after``: seconds the server asked to wait
    └── ServiceUnavailable (503)
    TransportError             no answer at all (refused, reset, timed out)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_BASE = "https://aiaas.dev/problems/"


class AiaasError(Exception):
    """The server answered with an error. ``problem`` is its RFC 9457 document as sent;
    ``type`` is its short name (``not_found``, ``validation``...), ``errors`` the field
    problems of a 422 (each with ``loc`` and ``msg``)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        raw_type = str(problem.get("type") or "about:blank")
        self.type = raw_type.removeprefix(PROBLEM_BASE)
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or self.title)
        errors = problem.get("errors")
        self.errors: list[dict[str, Any]] = list(errors) if isinstance(errors, list) else []
        super().__init__(f"{status} {self.title}: {self.detail}")


class RateLimited(AiaasError):
    """429: the account or key is over a rate limit; ``retry_after`` seconds from the
    ``Retry-After`` header (None when the server sent none)."""

    def __init__(
        self, status: int, problem: Mapping[str, Any], retry_after: float | None = None
    ) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class ServiceUnavailable(AiaasError):
    """503: the platform cannot serve now (database or broker unreachable, shutting down)."""


class TransportError(Exception):
    """No answer came: the connection was refused, reset or timed out (after any retries)."""
