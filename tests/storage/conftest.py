"""Every storage test runs against each store implementation through ``case``."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from aiaas.storage import FsspecArtifactStore, LocalArtifactStore


@dataclass
class StoreCase:
    """A store plus raw access to its backing storage, to see what a store leaves behind."""

    kind: str
    store: LocalArtifactStore | FsspecArtifactStore
    list_files: Callable[[], list[str]]
    write_raw: Callable[[str, bytes], None]
    age: Callable[[str, float], None]
    is_local: bool


def _dir_case(kind: str, root: Path) -> StoreCase:
    store: LocalArtifactStore | FsspecArtifactStore
    store = LocalArtifactStore(root) if kind == "local" else FsspecArtifactStore(f"file://{root}")

    def list_files() -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def write_raw(rel: str, data: bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def age(rel: str, seconds: float) -> None:
        then = time.time() - seconds
        os.utime(root / rel, (then, then))

    return StoreCase(kind, store, list_files, write_raw, age, is_local=True)


def _memory_case(root: str) -> StoreCase:
    fs = fsspec.filesystem("memory")
    store = FsspecArtifactStore(f"memory://{root}")
    prefix = f"/{root}/"

    def list_files() -> list[str]:
        return sorted(key.removeprefix(prefix) for key in fs.find(prefix))

    def write_raw(rel: str, data: bytes) -> None:
        fs.pipe_file(prefix + rel, data)

    def age(rel: str, seconds: float) -> None:
        # The memory backend has no utime; its file objects carry the timestamp directly.
        fs.store[prefix + rel].modified = datetime.now(tz=UTC) - timedelta(seconds=seconds)

    return StoreCase("memory", store, list_files, write_raw, age, is_local=False)


@pytest.fixture(params=["local", "memory", "fsspec-file"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    kind: str = request.param
    if kind == "memory":
        # The memory filesystem is process-global: a unique root keeps tests apart.
        root = f"aiaas-test-{uuid.uuid4().hex}"
        yield _memory_case(root)
        fs = fsspec.filesystem("memory")
        if fs.exists(f"/{root}"):
            fs.rm(f"/{root}", recursive=True)
    else:
        store_root = tmp_path / "store"
        store_root.mkdir()
        yield _dir_case(kind, store_root)
