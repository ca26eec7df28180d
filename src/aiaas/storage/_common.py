"""Layout and stream helpers shared by the store implementations."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol, runtime_checkable

from aiaas.storage.base import validate_digest
from aiaas.storage.errors import ArtifactTooLarge, InvalidDigest

ALGORITHM_DIR = "sha256"
TEMP_PREFIX = ".tmp-"
# Large enough to keep per-call overhead negligible, small enough to bound memory per upload.
READ_CHUNK_SIZE = 1024 * 1024


def blob_key(sha256: str) -> str:
    """Relative key ``sha256/<first 2 hex>/<full hex>``; two hex chars give 256 shards so
    no single directory grows with the whole store."""
    digest = validate_digest(sha256)
    return f"{ALGORITHM_DIR}/{digest[:2]}/{digest}"


def temp_name() -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(16)}"


def is_blob_entry(shard: str, name: str) -> bool:
    """Whether ``<shard>/<name>`` is a finished blob rather than a temp file or stray."""
    try:
        validate_digest(name)
    except InvalidDigest:
        return False
    return name[:2] == shard


@runtime_checkable
class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def iter_source(source: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    """Yield the chunks of ``source``.

    File objects are read in fixed-size pieces: iterating one would split on newlines,
    and binary weights may have none, which would pull the whole file into memory.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        # Iterating bytes yields ints; fail loudly instead of writing garbage.
        raise TypeError("put_stream() takes an iterable of chunks or a file; use put_bytes()")
    if isinstance(source, _Readable):
        while chunk := source.read(READ_CHUNK_SIZE):
            yield chunk
        return
    yield from source


def check_limit(max_bytes: int | None) -> None:
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")


def ensure_within(total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise ArtifactTooLarge(max_bytes)
