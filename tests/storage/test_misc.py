"""``open_store`` dispatch and error behaviour that does not depend on a backend."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from pathlib import Path

import pytest

from aiaas.storage import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    FsspecArtifactStore,
    InvalidDigest,
    LocalArtifactStore,
    StorageError,
    open_store,
    validate_digest,
)


def test_open_store_plain_path(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))

    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")

    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path


def test_open_store_file_url_with_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="remote host"):
        open_store("file://fileserver/models")


def test_open_store_other_scheme() -> None:
    store = open_store(f"memory://aiaas-test-{uuid.uuid4().hex}")

    assert isinstance(store, FsspecArtifactStore)
    assert isinstance(store, ArtifactStore)
    info = store.put_bytes(b"abc")
    assert store.get_bytes(info.sha256) == b"abc"
    store.delete(info.sha256)


def test_validate_digest() -> None:
    digest = hashlib.sha256(b"x").hexdigest()

    assert validate_digest(digest) == digest
    with pytest.raises(InvalidDigest):
        validate_digest(123)
    with pytest.raises(InvalidDigest):
        validate_digest(digest.encode())


@pytest.mark.parametrize(
    "error",
    [ArtifactNotFound("ab" * 32), ArtifactTooLarge(10), InvalidDigest("../etc/passwd")],
)
def test_errors_survive_pickling(error: StorageError) -> None:
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - round-tripping our own object

    assert type(clone) is type(error)
    assert clone.args == error.args
    assert str(clone) == str(error)


def test_error_hierarchy() -> None:
    assert issubclass(ArtifactNotFound, StorageError)
    assert issubclass(ArtifactNotFound, LookupError)
    assert issubclass(ArtifactTooLarge, StorageError)
    assert issubclass(InvalidDigest, StorageError)
    assert issubclass(InvalidDigest, ValueError)


def test_invalid_digest_message_is_bounded() -> None:
    assert len(str(InvalidDigest("a" * 10_000))) < 200
