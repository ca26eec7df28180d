"""Content-addressed artifact storage: blobs keyed by the sha256 of their bytes."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from aiaas.storage.base import ArtifactInfo, ArtifactStore, validate_digest
from aiaas.storage.errors import ArtifactNotFound, ArtifactTooLarge, InvalidDigest, StorageError
from aiaas.storage.fsspec_store import FsspecArtifactStore
from aiaas.storage.local import LocalArtifactStore

__all__ = [
    "ArtifactInfo",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactTooLarge",
    "FsspecArtifactStore",
    "InvalidDigest",
    "LocalArtifactStore",
    "StorageError",
    "open_store",
    "validate_digest",
]


def open_store(url_or_path: str) -> ArtifactStore:
    """Open the store a configuration value names.

    A plain path or a ``file://`` URL gives a LocalArtifactStore, whose ``local_path``
    allows zero-copy loads; any other scheme goes through fsspec.
    """
    parts = urlsplit(url_or_path)
    # A one-letter "scheme" is a Windows drive letter such as C:\\models.
    if len(parts.scheme) <= 1:
        return LocalArtifactStore(Path(url_or_path).expanduser())
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL names a remote host: {url_or_path!r}")
        return LocalArtifactStore(Path(unquote(parts.path)))
    return FsspecArtifactStore(url_or_path)
