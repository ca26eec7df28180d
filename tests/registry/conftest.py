"""Registry fixtures: models, uploads, and what a request leaves behind (rows and blobs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.ml.architectures import ARCHITECTURES, build_model, parse_config
from aiaas.ml.weights import save_safetensors
from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.storage import LocalArtifactStore
from tests import factories
from tests.factories import Account, post_version


def example_weights(architecture: str, config: dict[str, Any] | None = None) -> bytes:
    """A safetensors file of a freshly initialised model of this family."""
    raw = config if config is not None else ARCHITECTURES[architecture].example_config
    parsed = parse_config(architecture, raw, max_parameters=10**9)
    return save_safetensors(build_model(architecture, parsed))


@pytest.fixture
def create_model(client: TestClient, account: Account) -> Callable[..., dict[str, Any]]:
    def create(name: str = "digits", owner: Account | None = None, **fields: Any) -> dict[str, Any]:
        return factories.create_model(client, owner or account, name, **fields)

    return create


@pytest.fixture
def upload(client: TestClient, account: Account) -> Callable[..., Response]:
    def do(
        name: str,
        architecture: str = "mlp",
        config: dict[str, Any] | None = None,
        weights: bytes | None = None,
        owner: Account | None = None,
        **spec: Any,
    ) -> Response:
        config = config if config is not None else ARCHITECTURES[architecture].example_config
        body = {"architecture": architecture, "config": config, **spec}
        data = weights if weights is not None else example_weights(architecture, config)
        return post_version(
            client, name, spec=body, weights=data, headers=(owner or account).headers
        )

    return do


@pytest.fixture
def store(app: FastAPI) -> LocalArtifactStore:
    store = app.state.store
    assert isinstance(store, LocalArtifactStore)
    return store


@pytest.fixture
def artifacts_dir(settings: Settings) -> Path:
    return Path(settings.resolved_artifacts_url)


def files_under(root: Path) -> list[str]:
    """Every file below ``root`` (blobs, temp files, strays), as relative paths."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def count_rows(db: Database) -> Callable[[type[Any]], int]:
    """How many rows a registry table holds, seen through the test's own transaction."""

    def count(table: type[Model] | type[ModelVersion] | type[ModelAlias]) -> int:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(table)) or 0)

    return count
