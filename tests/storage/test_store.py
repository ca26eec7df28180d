"""Contract tests run against every store implementation (see the ``case`` fixture)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aiaas.storage import (
    ArtifactInfo,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTooLarge,
    InvalidDigest,
)
from aiaas.storage._common import READ_CHUNK_SIZE
from tests.storage.conftest import StoreCase

DATA = b"model weights \x00\xff" * 1000
DIGEST = hashlib.sha256(DATA).hexdigest()


def key_of(digest: str) -> str:
    return f"sha256/{digest[:2]}/{digest}"


def failing_source(chunks: int) -> Iterator[bytes]:
    for _ in range(chunks):
        yield b"x" * 4096
    raise RuntimeError("client disconnected")


def test_store_satisfies_protocol(case: StoreCase) -> None:
    assert isinstance(case.store, ArtifactStore)


def test_put_bytes_round_trip(case: StoreCase) -> None:
    info = case.store.put_bytes(DATA)

    assert info == ArtifactInfo(sha256=DIGEST, size_bytes=len(DATA))
    assert case.store.get_bytes(DIGEST) == DATA
    with case.store.open(DIGEST) as f:
        assert f.read() == DATA
    assert case.store.exists(DIGEST)
    assert case.store.size(DIGEST) == len(DATA)
    assert case.list_files() == [key_of(DIGEST)]


def test_put_empty_blob(case: StoreCase) -> None:
    info = case.store.put_bytes(b"")

    assert info == ArtifactInfo(hashlib.sha256(b"").hexdigest(), 0)
    assert case.store.get_bytes(info.sha256) == b""


def test_put_stream_multi_chunk(case: StoreCase) -> None:
    chunks = [bytes([i]) * (1000 + i) for i in range(20)]
    whole = b"".join(chunks)

    info = case.store.put_stream(iter(chunks))

    assert info == ArtifactInfo(hashlib.sha256(whole).hexdigest(), len(whole))
    assert case.store.get_bytes(info.sha256) == whole


def test_put_stream_from_file_object(case: StoreCase) -> None:
    # Larger than two read chunks and newline-free, so it is read by size, not by line.
    whole = b"\x01" * (2 * READ_CHUNK_SIZE + 123)

    info = case.store.put_stream(io.BytesIO(whole))

    assert info == ArtifactInfo(hashlib.sha256(whole).hexdigest(), len(whole))
    assert case.store.get_bytes(info.sha256) == whole


def test_put_stream_from_real_file(case: StoreCase, tmp_path: Path) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(DATA)

    with source.open("rb") as f:
        info = case.store.put_stream(f)

    assert info.sha256 == DIGEST


def test_put_stream_rejects_bare_bytes(case: StoreCase) -> None:
    with pytest.raises(TypeError, match="put_bytes"):
        case.store.put_stream(DATA)  # type: ignore[arg-type]
    assert case.list_files() == []


def test_put_is_idempotent(case: StoreCase) -> None:
    first = case.store.put_bytes(DATA)
    second = case.store.put_bytes(DATA)
    third = case.store.put_stream([DATA[:10], DATA[10:]])

    assert first == second == third
    assert case.list_files() == [key_of(DIGEST)]


def test_concurrent_identical_puts(case: StoreCase) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda _: case.store.put_bytes(DATA), range(16)))

    assert set(infos) == {ArtifactInfo(DIGEST, len(DATA))}
    assert case.list_files() == [key_of(DIGEST)]
    assert case.store.get_bytes(DIGEST) == DATA


def test_put_repairs_truncated_blob(case: StoreCase) -> None:
    case.write_raw(key_of(DIGEST), DATA[:10])

    case.store.put_bytes(DATA)

    assert case.store.get_bytes(DIGEST) == DATA


def test_max_bytes_at_limit_is_accepted(case: StoreCase) -> None:
    info = case.store.put_stream([DATA], max_bytes=len(DATA))

    assert info.size_bytes == len(DATA)


def test_max_bytes_exceeded_leaves_nothing(case: StoreCase) -> None:
    chunks = [DATA[:100], DATA[100:200], DATA[200:]]

    with pytest.raises(ArtifactTooLarge) as excinfo:
        case.store.put_stream(chunks, max_bytes=150)

    assert excinfo.value.limit == 150
    assert case.list_files() == []
    assert not case.store.exists(DIGEST)


def test_max_bytes_exceeded_keeps_other_blobs(case: StoreCase) -> None:
    case.store.put_bytes(b"keep me")

    with pytest.raises(ArtifactTooLarge):
        case.store.put_stream(io.BytesIO(DATA), max_bytes=1)

    assert case.list_files() == [key_of(hashlib.sha256(b"keep me").hexdigest())]


def test_negative_max_bytes_is_refused(case: StoreCase) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        case.store.put_stream([DATA], max_bytes=-1)


def test_crash_mid_write_leaves_nothing(case: StoreCase) -> None:
    case.store.put_bytes(DATA)

    with pytest.raises(RuntimeError, match="client disconnected"):
        case.store.put_stream(failing_source(chunks=3))

    assert case.list_files() == [key_of(DIGEST)]
    assert list(case.store.iter_digests()) == [DIGEST]


INVALID_DIGESTS = [
    "../etc/passwd",
    "../../" + "a" * 58,
    DIGEST.upper(),
    DIGEST[:63],
    DIGEST + "0",
    DIGEST[:62] + "/x",
    DIGEST + "\n",
    "",
    "g" * 64,
]

DIGEST_METHODS: dict[str, Callable[[ArtifactStore, str], object]] = {
    "get_bytes": lambda s, d: s.get_bytes(d),
    "open": lambda s, d: s.open(d),
    "exists": lambda s, d: s.exists(d),
    "size": lambda s, d: s.size(d),
    "delete": lambda s, d: s.delete(d),
    "local_path": lambda s, d: s.local_path(d),
}


@pytest.mark.parametrize("method", sorted(DIGEST_METHODS))
@pytest.mark.parametrize("bad", INVALID_DIGESTS)
def test_invalid_digest_is_refused(case: StoreCase, method: str, bad: str) -> None:
    with pytest.raises(InvalidDigest) as excinfo:
        DIGEST_METHODS[method](case.store, bad)

    assert excinfo.value.value == bad
    assert case.list_files() == []


@pytest.mark.parametrize("method", ["get_bytes", "open", "size"])
def test_missing_blob_raises_not_found(case: StoreCase, method: str) -> None:
    with pytest.raises(ArtifactNotFound) as excinfo:
        DIGEST_METHODS[method](case.store, DIGEST)

    assert excinfo.value.sha256 == DIGEST


def test_missing_blob_does_not_exist(case: StoreCase) -> None:
    assert not case.store.exists(DIGEST)


def test_delete(case: StoreCase) -> None:
    case.store.put_bytes(DATA)

    assert case.store.delete(DIGEST) is True
    assert not case.store.exists(DIGEST)
    with pytest.raises(ArtifactNotFound):
        case.store.get_bytes(DIGEST)
    assert case.store.delete(DIGEST) is False


def test_put_after_delete(case: StoreCase) -> None:
    case.store.put_bytes(DATA)
    case.store.delete(DIGEST)

    case.store.put_bytes(DATA)

    assert case.store.get_bytes(DIGEST) == DATA


def test_iter_digests(case: StoreCase) -> None:
    digests = {case.store.put_bytes(bytes([i]) * 10).sha256 for i in range(5)}

    assert sorted(case.store.iter_digests()) == sorted(digests)


def test_iter_digests_empty_store(case: StoreCase) -> None:
    assert list(case.store.iter_digests()) == []


def test_iter_digests_skips_temps_and_strays(case: StoreCase) -> None:
    case.store.put_bytes(DATA)
    case.write_raw("sha256/.tmp-leftover", b"partial")
    case.write_raw(f"sha256/00/{DIGEST}", b"in the wrong shard")
    case.write_raw(f"sha256/{DIGEST[:2]}/notes.txt", b"stray")

    assert list(case.store.iter_digests()) == [DIGEST]


def test_local_path(case: StoreCase) -> None:
    case.store.put_bytes(DATA)

    path = case.store.local_path(DIGEST)

    if case.is_local:
        assert path is not None
        assert path.read_bytes() == DATA
    else:
        assert path is None


def test_local_path_missing(case: StoreCase) -> None:
    if case.is_local:
        with pytest.raises(ArtifactNotFound):
            case.store.local_path(DIGEST)
    else:
        assert case.store.local_path(DIGEST) is None


def test_cleanup_temp_removes_only_stale_temps(case: StoreCase) -> None:
    case.store.put_bytes(DATA)
    case.write_raw("sha256/.tmp-stale", b"partial")
    case.write_raw("sha256/.tmp-fresh", b"in progress")
    case.age("sha256/.tmp-stale", 7200)

    assert case.store.cleanup_temp(older_than_s=3600) == 1

    assert case.list_files() == sorted(["sha256/.tmp-fresh", key_of(DIGEST)])
