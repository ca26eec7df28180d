"""Model resolution for the hot path: (name, version reference) → what to run, cached briefly.

Each entry keeps the model's owner and visibility, so access is still checked per caller from
the cached data. Registry changes drop the model's entries at once in this process
(``events.MODEL_CHANGED``); the TTL bounds staleness for changes made through another gateway.
An alias that splits its traffic or has a shadow resolves to a :class:`Rollout`, which picks a
version per request.
"""

from __future__ import annotations

import itertools
import random
import uuid
import zlib
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.caching import RefreshingCache
from aiaas.db import Database
from aiaas.errors import AppError, InvalidInput, NotFound
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelAlias, ModelVersion
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
    # Set when an alias with a split or a shadow routed here: the roll-out it belongs to
    # (whose figures the compare route reports), and the version that gets a copy.
    rollout: RolloutKey | None = None
    shadow: ResolvedVersion | None = None

    def visible_to(self, user_id: uuid.UUID) -> bool:
        return self.public or self.owner_id == user_id


@dataclass(frozen=True, slots=True)
class RolloutKey:
    """One alias's set-up: figures restart when the alias is set again."""

    model_id: uuid.UUID
    alias: str
    since: datetime


@dataclass(frozen=True, slots=True)
class Rollout:
    """An alias over weighted versions: each request picks one, by its routing key when it
    has one (the same key, the same version) and at random otherwise."""

    versions: tuple[ResolvedVersion, ...]
    bounds: tuple[int, ...]  # cumulative weights: version i takes [bounds[i-1], bounds[i])

    def pick(self, routing_key: str | None) -> ResolvedVersion:
        if routing_key is None:
            point = random.randrange(100)  # noqa: S311 (a traffic split, not a secret)
        else:
            # A stable hash (unlike hash(), not salted per process): every gateway agrees.
            point = zlib.crc32(routing_key.encode()) % 100
        return self.versions[bisect_right(self.bounds, point)]


class _VersionRefused(Exception):
    """The model exists but the version asked for does not, or is no reference at all; who
    may be told so is decided per caller, outside the cache."""

    def __init__(self, error: AppError, *, owner_id: uuid.UUID, public: bool) -> None:
        super().__init__(error.detail)
        self.error = error
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
        self._cache: RefreshingCache[tuple[str, str | None], ResolvedVersion | Rollout] = (
            RefreshingCache(ttl_s=ttl_s)
        )

    async def resolve(
        self, name: str, ref: str | None, user_id: uuid.UUID, routing_key: str | None = None
    ) -> ResolvedVersion:
        try:
            entry = await self._cache.get((name, ref), lambda: self._lookup(name, ref))
        except _VersionRefused as refused:
            # Another account's private model answers as an unknown name does, whatever
            # version was asked: "no version 7" (or "0 is no version") would confirm that the
            # model exists.
            if not (refused.public or refused.owner_id == user_id):
                raise NotFound(f"No model named '{name}'.") from None
            raise refused.error from None
        found = entry.pick(routing_key) if isinstance(entry, Rollout) else entry
        if not found.visible_to(user_id):
            raise NotFound(f"No model named '{name}'.")
        return found

    def _lookup(self, name: str, ref: str | None) -> ResolvedVersion | Rollout:
        with self._database.session() as session:
            model = session.scalar(select(Model).where(Model.name == name))
            if model is None:
                raise NotFound(f"No model named '{name}'.")
            try:
                if ref is None:
                    alias = session.get(ModelAlias, (model.id, DEFAULT_ALIAS))
                    ref_used: str | int = DEFAULT_ALIAS if alias else LATEST
                else:
                    ref_used = ref
                    parsed = versions.parse_reference(ref)
                    alias = (
                        session.get(ModelAlias, (model.id, parsed))
                        if isinstance(parsed, str) and parsed != LATEST
                        else None
                    )
                found = versions.resolve_version(session, model=model, ref=ref_used)
            except (NotFound, InvalidInput) as exc:
                raise _VersionRefused(
                    exc, owner_id=model.owner_id, public=model.visibility == "public"
                ) from None
            resolved = self._resolved(model, found)
            if alias is None or (not alias.split and alias.shadow is None):
                return resolved
            return self._rollout(session, model, alias, resolved)

    def _resolved(self, model: Model, version: ModelVersion) -> ResolvedVersion:
        return ResolvedVersion(
            model_id=model.id,
            model=model.name,
            owner_id=model.owner_id,
            public=model.visibility == "public",
            task=model.task,
            capture_inputs=model.capture_inputs,
            version=version.number,
            spec=versions.serving_spec(
                model,
                version,
                default_max_batch_size=self._default_batch,
                default_max_delay_ms=self._default_delay,
            ),
        )

    def _rollout(
        self, session: Session, model: Model, alias: ModelAlias, primary: ResolvedVersion
    ) -> Rollout:
        key = RolloutKey(model_id=model.id, alias=alias.alias, since=alias.updated_at)
        shadow = self._resolved(model, alias.shadow) if alias.shadow is not None else None
        shares: list[tuple[ResolvedVersion, int]] = [(primary, 100)]
        if alias.split:
            ids = [uuid.UUID(share["version_id"]) for share in alias.split]
            query = select(ModelVersion).where(ModelVersion.id.in_(ids))
            rows = {v.id: v for v in session.scalars(query)}
            shares = [
                (self._resolved(model, rows[ident]), int(share["weight"]))
                for ident, share in zip(ids, alias.split, strict=True)
            ]
        bounds = list(itertools.accumulate(weight for _, weight in shares))
        return Rollout(
            versions=tuple(replace(v, rollout=key, shadow=shadow) for v, _ in shares),
            bounds=tuple(bounds),
        )

    def forget(self, name: str) -> None:
        self._cache.forget(lambda key: key[0] == name)
