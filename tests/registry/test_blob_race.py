"""A delete and an upload of the same bytes, interleaved: the upload's blob survives.

The upload stores its bytes (a no-op: they are there), then, before its row commits, the
only other version using them is deleted, whose release finds no committed reference and
removes the blob. The upload then commits; its version must still load.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.db import Database
from aiaas.ml.weights import save_safetensors
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.registry.models import Model
from aiaas.registry.schemas import VersionSpec
from aiaas.storage import ArtifactInfo, open_store
from aiaas.storage.local import LocalArtifactStore
from tests.factories import add_model, add_user, seeded_module, unique

CONFIG = {"input_dim": 4, "hidden": [8], "output_dim": 3}


class PausingStore(LocalArtifactStore):
    """Stops the uploading thread right after its put_bytes, until told to go on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.pause_in: threading.Thread | None = None
        self.paused = threading.Event()
        self.go_on = threading.Event()

    def put_bytes(self, data: bytes) -> ArtifactInfo:
        info = super().put_bytes(data)
        if threading.current_thread() is self.pause_in:
            self.pause_in = None
            self.paused.set()
            assert self.go_on.wait(20)
        return info


@pytest.fixture
def database(committed_url: str) -> Iterator[Database]:
    db = Database.from_url(committed_url)
    yield db
    db.dispose()


def make_model(database: Database, owner_id: uuid.UUID) -> Model:
    with database.session() as session:
        model = add_model(session, owner_id, name=unique("race"), task="regression")
        session.commit()
        session.expunge(model)
        return model


def test_an_upload_of_stored_bytes_survives_a_concurrent_delete(
    database: Database, tmp_path: Path
) -> None:
    store = PausingStore(tmp_path / "artifacts")
    with database.session() as session:
        owner_id = add_user(session).id
        session.commit()
    weights = save_safetensors(seeded_module("mlp", CONFIG))
    spec = VersionSpec(architecture="mlp", config=CONFIG)
    first, second = make_model(database, owner_id), make_model(database, owner_id)
    with database.session() as session:
        old = versions.create_version(
            session, model=first, spec=spec, weights=weights, store=store, max_parameters=10**6
        )
        digest = old.sha256

    errors: list[BaseException] = []

    def upload() -> None:
        try:
            with database.session() as session:
                versions.create_version(
                    session,
                    model=second,
                    spec=spec,
                    weights=weights,
                    store=store,
                    max_parameters=10**6,
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    uploader = threading.Thread(target=upload)
    store.pause_in = uploader
    uploader.start()
    assert store.paused.wait(20)
    with database.session() as session:
        doomed = session.get(Model, first.id)
        assert doomed is not None
        registry.delete_model(session, model=doomed, store=store)
    assert not store.exists(digest)  # the delete saw no committed reference
    store.go_on.set()
    uploader.join(20)
    assert not errors, errors
    assert store.exists(digest)
    assert open_store(str(tmp_path / "artifacts")).get_bytes(digest) == weights
