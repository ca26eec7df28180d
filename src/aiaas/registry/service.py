"""Models: create, read, change, delete, and who may do which.

Another account's private model does not exist as far as the caller can tell (404 on every
route); a public model can be read by anyone with the scope and changed only by its owner.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from aiaas.accounts import audit
from aiaas.accounts.models import User
from aiaas.db import utcnow
from aiaas.errors import Conflict, Forbidden, NotFound
from aiaas.pagination import PageParams, fetch_page
from aiaas.registry.models import Model, ModelVersion
from aiaas.registry.schemas import MODEL_NAME_PATTERN, ModelCreate, ModelRead, ModelUpdate
from aiaas.storage import ArtifactStore

_NAME = re.compile(MODEL_NAME_PATTERN)


def _not_found(name: str) -> NotFound:
    return NotFound(f"No model named '{name}'.")


def readable_model(session: Session, *, name: str, user: User) -> Model:
    if not _NAME.fullmatch(name):
        # No model can have this name; and some (a NUL byte) PostgreSQL refuses to compare.
        raise _not_found(name)
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None or (model.owner_id != user.id and model.visibility != "public"):
        raise _not_found(name)
    return model


def writable_model(session: Session, *, name: str, user: User) -> Model:
    model = readable_model(session, name=name, user=user)
    if model.owner_id != user.id:
        raise Forbidden(f"Only the owner of '{name}' can change it.")
    return model


def create_model(
    session: Session, *, owner: User, spec: ModelCreate, address: str | None = None
) -> Model:
    if session.scalar(select(Model.id).where(Model.name == spec.name)) is not None:
        raise Conflict(f"The name '{spec.name}' is taken.")
    model = Model(owner_id=owner.id, **spec.model_dump())
    session.add(model)
    audit.record(
        session,
        audit.MODEL_CREATED,
        actor_id=owner.id,
        target=spec.name,
        address=address,
        visibility=spec.visibility,
    )
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create took the name first
        session.rollback()
        raise Conflict(f"The name '{spec.name}' is taken.") from exc
    return model


def update_model(
    session: Session,
    *,
    model: Model,
    changes: ModelUpdate,
    actor_id: uuid.UUID | None = None,
    address: str | None = None,
) -> Model:
    was = model.visibility
    for field, value in changes.model_dump(exclude_unset=True).items():
        if value is None and field != "labels":
            continue
        setattr(model, field, value)
    model.updated_at = utcnow()
    if model.visibility != was:
        action = audit.MODEL_PUBLISHED if model.visibility == "public" else audit.MODEL_UNPUBLISHED
        audit.record(
            session,
            action,
            actor_id=actor_id,
            account_id=model.owner_id,
            target=model.name,
            address=address,
        )
    session.commit()
    return model


def list_models(
    session: Session, *, user: User, params: PageParams, name_contains: str | None = None
) -> tuple[list[Model], str | None]:
    query = (
        select(Model)
        .where(or_(Model.owner_id == user.id, Model.visibility == "public"))
        .options(selectinload(Model.aliases))
    )
    if name_contains:
        query = query.where(Model.name.contains(name_contains.lower(), autoescape=True))
    return fetch_page(session, query, params)


def delete_model(
    session: Session,
    *,
    model: Model,
    store: ArtifactStore,
    actor_id: uuid.UUID | None = None,
    address: str | None = None,
) -> None:
    digests = set(
        session.scalars(select(ModelVersion.sha256).where(ModelVersion.model_id == model.id))
    )
    audit.record(
        session,
        audit.MODEL_DELETED,
        actor_id=actor_id,
        account_id=model.owner_id,
        target=model.name,
        address=address,
        versions=len(digests),
    )
    session.execute(delete(Model).where(Model.id == model.id))
    session.commit()
    release_artifacts(session, store=store, digests=digests)


def release_artifacts(session: Session, *, store: ArtifactStore, digests: set[str]) -> None:
    """Delete the blobs that no row refers to any more (the same bytes may serve many versions)."""
    if not digests:
        return
    still_used = set(
        session.scalars(select(ModelVersion.sha256).where(ModelVersion.sha256.in_(digests)))
    )
    for digest in digests - still_used:
        store.delete(digest)


def latest_numbers(session: Session, models: list[Model]) -> dict[str, int]:
    if not models:
        return {}
    rows = session.execute(
        select(ModelVersion.model_id, func.max(ModelVersion.number))
        .where(ModelVersion.model_id.in_([m.id for m in models]))
        .group_by(ModelVersion.model_id)
    )
    return {str(model_id): number for model_id, number in rows}


def to_read(model: Model, *, user: User, latest: int | None) -> ModelRead:
    return ModelRead(
        id=model.id,
        name=model.name,
        task=model.task,
        description=model.description,
        labels=model.labels,
        visibility=model.visibility,
        capture_inputs=model.capture_inputs,
        owned=model.owner_id == user.id,
        latest_version=latest,
        aliases={a.alias: a.version.number for a in model.aliases},
        created_at=model.created_at,
        updated_at=model.updated_at,
    )
