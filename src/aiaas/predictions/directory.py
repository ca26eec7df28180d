"""Model resolution for the hot path: (name, version reference) → what to run, cached briefly.

Each entry keeps the model's owner and visibility, so access is still checked per caller from
the cached data. Registry changes drop the model's entries at once in this process
(``events.MODEL_CHANGED``); the TTL bounds staleness for changes made through another gateway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from aiaas.caching import RefreshingCache
from aiaas.db import Database
from aiaas.errors import NotFound
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelAlias
from aiaas.registry.schemas import DEFAULT_ALIAS, LATEST
from aiaas.serving.spec import ServingSpec


@dataclass(frozen=True, slots=True)
class ResolvedVersion:
    model_id: uuid.UUID
    model: str
    owner_id: uuid.UUID
    public: bool
    task: str
    capture_inputs: bool
    version: int
    spec: ServingSpec

    def visible_to(self, user_id: uuid.UUID) -> bool:
        return self.public or self.owner_id == user_id


class _VersionMissing(Exception):
    """The model exists but not the version asked for; who may know that is decided per
    caller, outside the cache."""

    def __init__(self, detail: str, *, owner_id: uuid.UUID, public: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.owner_id = owner_id
        self.public = public


class ModelDirectory:
    def __init__(
        self,
        database: Database,
        *,
        ttl_s: float = 2.0,
        default_max_batch_size: int,
        default_max_delay_ms: float,
    ) -> None:
        self._database = database
        self._default_batch = default_max_batch_size
        self._default_delay = default_max_delay_ms
        self._cache: RefreshingCache[tuple[str, str | None], ResolvedVersion] = RefreshingCache(
            ttl_s=ttl_s
        )

    async def resolve(self, name: str, ref: str | None, user_id: uuid.UUID) -> ResolvedVersion:
        try:
            found = await self._cache.get((name, ref), lambda: self._lookup(name, ref))
        except _VersionMissing as missing:
            # Another account's private model answers as an unknown name does, whatever
            # version was asked: "no version 7" would confirm that the model exists.
            if not (missing.public or missing.owner_id == user_id):
                raise NotFound(f"No model named '{name}'.") from None
            raise NotFound(missing.detail) from None
        if not found.visible_to(user_id):
            raise NotFound(f"No model named '{name}'.")
        return found

    def _lookup(self, name: str, ref: str | None) -> ResolvedVersion:
        with self._database.session() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                raise NotFound(f"No model named '{name}'.")
            if ref is None:
                alias = session.get(ModelAlias, (model.id, DEFAULT_ALIAS))
                ref_used: str | int = DEFAULT_ALIAS if alias else LATEST
            else:
                ref_used = ref
            try:
                found = versions.resolve_version(session, model=model, ref=ref_used)
            except NotFound as exc:
                raise _VersionMissing(
                    exc.detail, owner_id=model.owner_id, public=model.visibility == "public"
                ) from None
            return ResolvedVersion(
                model_id=model.id,
                model=model.name,
                owner_id=model.owner_id,
                public=model.visibility == "public",
                task=model.task,
                capture_inputs=model.capture_inputs,
                version=found.number,
                spec=versions.serving_spec(
                    model,
                    found,
                    default_max_batch_size=self._default_batch,
                    default_max_delay_ms=self._default_delay,
                ),
            )

    def forget(self, name: str) -> None:
        self._cache.forget(lambda key: key[0] == name)
