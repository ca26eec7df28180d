"""The contract every artifact store fulfils.

Blobs are addressed by the sha256 of their exact bytes. A store only stores: the database
owns the digests and decides when a blob is no longer referenced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from aiaas.storage.errors import InvalidDigest

__all__ = ["ArtifactInfo", "ArtifactStore", "validate_digest"]

_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def validate_digest(value: object) -> str:
    """Return ``value`` if it is a canonical sha256 hex digest, else raise InvalidDigest.

    Only lowercase is accepted so that one blob has exactly one key; anything else
    (separators, dots, uppercase) is refused before it can be joined into a path.
    """
    if not isinstance(value, str) or _DIGEST_RE.fullmatch(value) is None:
        raise InvalidDigest(value)
    return value


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What a store knows about a stored blob."""

    sha256: str
    size_bytes: int


@runtime_checkable
class ArtifactStore(Protocol):
    """A content-addressed blob store.

    Every method that takes a digest raises InvalidDigest for a malformed one and, where
    it needs the blob, ArtifactNotFound when it is absent.
    """

    def put_bytes(self, data: bytes) -> ArtifactInfo:
        """Store ``data``; storing bytes that are already present is a no-op."""
        ...

    def put_stream(
        self, chunks: Iterable[bytes] | BinaryIO, *, max_bytes: int | None = None
    ) -> ArtifactInfo:
        """Store a stream, hashing while writing.

        Raises ArtifactTooLarge, keeping nothing, once more than ``max_bytes`` arrive.
        If the source raises, nothing is kept and the error propagates.
        """
        ...

    def get_bytes(self, sha256: str) -> bytes:
        """Return the whole blob."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """Open the blob for reading; the caller closes it."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        ...

    def size(self, sha256: str) -> int:
        """Size of the blob in bytes."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob; True if something was removed, False if it was absent."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path to the blob for zero-copy loads, or None for remote stores.

        None says only that the store cannot offer a path, not whether the blob exists.
        """
        ...

    def iter_digests(self) -> Iterator[str]:
        """Yield the digest of every stored blob, in no particular order."""
        ...
