"""Artifact store on the local filesystem."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from aiaas.storage._common import (
    ALGORITHM_DIR,
    TEMP_PREFIX,
    blob_key,
    check_limit,
    ensure_within,
    is_blob_entry,
    iter_source,
    temp_name,
)
from aiaas.storage.base import ArtifactInfo
from aiaas.storage.errors import ArtifactNotFound

__all__ = ["LocalArtifactStore"]

# O_EXCL guarantees the temp name is ours alone; O_BINARY matters only on Windows.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


class LocalArtifactStore:
    """Blobs stored as ``<root>/sha256/<first 2 hex>/<full hex>``.

    Uploads are written to ``<root>/sha256/.tmp-<random>`` and renamed into place. The
    final shard directory cannot be the temp's home because the digest, and so the shard,
    is only known after the last byte; the parent directory is on the same filesystem,
    which is all ``os.replace`` needs to be atomic.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blob_dir = self.root / ALGORITHM_DIR
        self._blob_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def _path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def put_bytes(self, data: bytes) -> ArtifactInfo:
        return self.put_stream((data,))

    def put_stream(
        self, chunks: Iterable[bytes] | BinaryIO, *, max_bytes: int | None = None
    ) -> ArtifactInfo:
        check_limit(max_bytes)
        tmp = self._blob_dir / temp_name()
        hasher = hashlib.sha256()
        total = 0
        try:
            with os.fdopen(os.open(tmp, _CREATE_FLAGS, 0o644), "wb") as out:
                for chunk in iter_source(chunks):
                    total += len(chunk)
                    ensure_within(total, max_bytes)
                    hasher.update(chunk)
                    out.write(chunk)
                digest = hasher.hexdigest()
                final = self._path(digest)
                if _size_or_none(final) == total:
                    # Already stored: same digest and size means the same bytes.
                    return ArtifactInfo(digest, total)
                out.flush()
                # Data must be on disk before the name points at it, or a power cut
                # could leave a real name over an empty or partial file.
                os.fsync(out.fileno())
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            return ArtifactInfo(digest, total)
        finally:
            # After a successful replace the temp name is gone; in every other outcome
            # (duplicate, limit, source error, interrupt) it must not outlive this call.
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def get_bytes(self, sha256: str) -> bytes:
        path = self._path(sha256)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None

    def open(self, sha256: str) -> BinaryIO:
        path = self._path(sha256)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def size(self, sha256: str) -> int:
        size = _size_or_none(self._path(sha256))
        if size is None:
            raise ArtifactNotFound(sha256)
        return size

    def delete(self, sha256: str) -> bool:
        # Empty shard directories are left alone: removing one could race a concurrent
        # put that is about to rename a file into it.
        try:
            self._path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def local_path(self, sha256: str) -> Path:
        path = self._path(sha256)
        if not path.is_file():
            raise ArtifactNotFound(sha256)
        return path

    def iter_digests(self) -> Iterator[str]:
        with os.scandir(self._blob_dir) as shards:
            shard_dirs = [e.name for e in shards if len(e.name) == 2 and e.is_dir()]
        for shard in shard_dirs:
            try:
                with os.scandir(self._blob_dir / shard) as entries:
                    names = [e.name for e in entries if e.is_file()]
            except FileNotFoundError:
                continue
            yield from (name for name in names if is_blob_entry(shard, name))

    def cleanup_temp(self, older_than_s: float) -> int:
        """Remove temp files left by crashed uploads; returns how many were removed.

        The age threshold keeps uploads still in progress safe: pick it well above the
        longest upload expected.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        with os.scandir(self._blob_dir) as entries:
            stale = [
                e.path
                for e in entries
                if e.name.startswith(TEMP_PREFIX)
                and e.is_file(follow_symlinks=False)
                and e.stat(follow_symlinks=False).st_mtime < cutoff
            ]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        return removed


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; POSIX keeps directory entries in the directory's data."""
    if os.name != "posix":
        return
    # Some filesystems refuse fsync on a directory; the blob is already complete and
    # correctly named, so losing only this durability step is acceptable.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
