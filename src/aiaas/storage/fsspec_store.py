"""Artifact store over any fsspec filesystem (``file://``, ``memory://``, ``s3://`` ...)."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import fsspec

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

__all__ = ["FsspecArtifactStore"]


class FsspecArtifactStore:
    """Blobs stored under ``<url>/sha256/<first 2 hex>/<full hex>``.

    Uploads go to the temp key ``<url>/sha256/.tmp-<random>`` and are then moved to their
    final key. On object stores a PUT is already atomic (an object only becomes visible
    once complete), so there the temp key is not for atomicity: it exists because the
    final key depends on the digest, which is known only after the last byte. On
    filesystems the move is a rename, which is what makes the write crash-safe.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
        self._fs: Any = fs
        root = cast(str, path).rstrip("/")
        self._blob_dir = f"{root}/{ALGORITHM_DIR}" if root else ALGORITHM_DIR
        self._root = root
        self._is_local = "file" in _protocols(fs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _key(self, sha256: str) -> str:
        key = blob_key(sha256)
        return f"{self._root}/{key}" if self._root else key

    def put_bytes(self, data: bytes) -> ArtifactInfo:
        return self.put_stream((data,))

    def put_stream(
        self, chunks: Iterable[bytes] | BinaryIO, *, max_bytes: int | None = None
    ) -> ArtifactInfo:
        check_limit(max_bytes)
        fs = self._fs
        tmp = f"{self._blob_dir}/{temp_name()}"
        hasher = hashlib.sha256()
        total = 0
        moved = False
        try:
            if self._is_local:
                # Local fsspec does not create parents by default; object stores have none.
                fs.makedirs(self._blob_dir, exist_ok=True)
            with fs.open(tmp, "wb") as out:
                for chunk in iter_source(chunks):
                    total += len(chunk)
                    ensure_within(total, max_bytes)
                    hasher.update(chunk)
                    out.write(chunk)
            digest = hasher.hexdigest()
            final = self._key(digest)
            if self._size_or_none(final) == total:
                # Already stored: same digest and size means the same bytes.
                return ArtifactInfo(digest, total)
            if self._is_local:
                fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
            fs.mv(tmp, final)
            moved = True
            return ArtifactInfo(digest, total)
        finally:
            # Leaving the ``with`` on an error still closes, and so commits, the partial
            # temp object on most backends; remove it in every outcome but a good move.
            if not moved:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm_file(tmp)

    def get_bytes(self, sha256: str) -> bytes:
        key = self._key(sha256)
        try:
            return cast(bytes, self._fs.cat_file(key))
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None

    def open(self, sha256: str) -> BinaryIO:
        key = self._key(sha256)
        try:
            return cast(BinaryIO, self._fs.open(key, "rb"))
        except FileNotFoundError:
            raise ArtifactNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self._size_or_none(self._key(sha256)) is not None

    def size(self, sha256: str) -> int:
        size = self._size_or_none(self._key(sha256))
        if size is None:
            raise ArtifactNotFound(sha256)
        return size

    def delete(self, sha256: str) -> bool:
        key = self._key(sha256)
        # S3-like stores answer a delete of a missing key with success, so ask first to
        # keep the return value honest outside of races between two deleters.
        if self._size_or_none(key) is None:
            return False
        try:
            self._fs.rm_file(key)
        except FileNotFoundError:
            return False
        return True

    def local_path(self, sha256: str) -> Path | None:
        key = self._key(sha256)
        if not self._is_local:
            return None
        if self._size_or_none(key) is None:
            raise ArtifactNotFound(sha256)
        return Path(key)

    def iter_digests(self) -> Iterator[str]:
        try:
            found = cast(list[str], self._fs.find(self._blob_dir))
        except FileNotFoundError:
            return
        for key in found:
            parent, _, name = key.rpartition("/")
            shard_parent, _, shard = parent.rpartition("/")
            # Compare by suffix: some backends return keys with or without a leading "/".
            if shard_parent.strip("/") == self._blob_dir.strip("/") and is_blob_entry(shard, name):
                yield name

    def cleanup_temp(self, older_than_s: float) -> int:
        """Remove temp keys left by crashed uploads; returns how many were removed.

        Backends that cannot report a modification time are skipped rather than guessed.
        """
        cutoff = time.time() - older_than_s
        try:
            names = cast(list[str], self._fs.ls(self._blob_dir, detail=False))
        except FileNotFoundError:
            return 0
        removed = 0
        for key in names:
            if not key.rpartition("/")[2].startswith(TEMP_PREFIX):
                continue
            try:
                if self._fs.modified(key).timestamp() >= cutoff:
                    continue
                self._fs.rm_file(key)
            except (FileNotFoundError, NotImplementedError):
                continue
            removed += 1
        return removed

    def _size_or_none(self, key: str) -> int | None:
        try:
            info = self._fs.info(key)
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        return int(info["size"])


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
