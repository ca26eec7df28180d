"""Errors raised by artifact stores.

Each error keeps its constructor argument as its only ``args`` entry, so that it survives
pickling (task queues ship exceptions between processes) and rebuilds unchanged.
"""

from __future__ import annotations

__all__ = ["ArtifactNotFound", "ArtifactTooLarge", "InvalidDigest", "StorageError"]


class StorageError(Exception):
    """Base class for every error an artifact store raises on purpose."""


class ArtifactNotFound(StorageError, LookupError):
    """No blob is stored under this digest."""

    def __init__(self, sha256: str) -> None:
        super().__init__(sha256)
        self.sha256 = sha256

    def __str__(self) -> str:
        return f"artifact not found: sha256:{self.sha256}"


class ArtifactTooLarge(StorageError):
    """A streamed upload went past its byte limit; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        return f"artifact exceeds the limit of {self.limit} bytes"


class InvalidDigest(StorageError, ValueError):
    """The value is not 64 lowercase hex characters, so it never reaches a path."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        # The value is untrusted input and may be huge; keep log lines bounded.
        shown = repr(self.value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"invalid sha256 digest: {shown} (expected 64 lowercase hex characters)"
