"""Quotas per account, checked at the gateway before anything is stored or queued.

Every quota has a default in the settings (``AIAAS_QUOTA_<NAME>``), which an admin may override
per account in ``users.limits["quotas"]``:

- no entry: the setting's default;
- an integer >= 0: the account's own limit (0 allows none at all);
- ``null``: unlimited.

Use is counted from the rows every time (models, versions, sizes, job states, training times),
so it cannot drift from what is really there. A refusal is
:class:`~aiaas.errors.QuotaExceeded`: 403 ``quota-exceeded`` naming the quota, its limit and the
current use.

Concurrency: :func:`check` first locks the account's row (``SELECT ... FOR NO KEY UPDATE`` on
PostgreSQL, which still lets other transactions insert rows that reference the account; SQLite's
write transactions hold the database's one write lock from their first statement anyway), so
two creates of one account are serialized as long as the check and the insert share one
transaction: the second one counts the first one's row. Dataset uploads are the exception: their
service ends the request's transaction before parsing the file, which releases the lock, so
concurrent uploads may each pass the ``stored_bytes`` check and overshoot it by up to their
number times ``AIAAS_MAX_UPLOAD_MB``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.config import Settings
from aiaas.errors import QuotaExceeded
from aiaas.jobs import QUEUED, RUNNING
from aiaas.predictions import service as predictions
from aiaas.predictions.models import Prediction
from aiaas.predictions.schemas import PredictionCreate
from aiaas.quotas.counting import stored_bytes, stored_input_bytes, training_seconds
from aiaas.quotas.schemas import QuotaList, QuotaRead
from aiaas.registry.models import Model, ModelVersion
from aiaas.trainings.models import Training

_ACTIVE = (QUEUED, RUNNING)


class Quota(StrEnum):
    MODELS = "models"
    VERSIONS_PER_MODEL = "versions_per_model"
    STORED_BYTES = "stored_bytes"
    ASYNC_JOBS = "async_jobs"
    TRAININGS = "trainings"
    TRAINING_SECONDS_PER_MONTH = "training_seconds_per_month"


UNITS: dict[Quota, str] = {
    Quota.MODELS: "models",
    Quota.VERSIONS_PER_MODEL: "versions",
    Quota.STORED_BYTES: "bytes",
    Quota.ASYNC_JOBS: "jobs",
    Quota.TRAININGS: "trainings",
    Quota.TRAINING_SECONDS_PER_MONTH: "seconds",
}


def default_limit(quota: Quota, settings: Settings) -> int:
    value: int = getattr(settings, f"quota_{quota.value}")
    return value


def limits_for(user: User, settings: Settings) -> dict[str, int | None]:
    """Each quota's limit for ``user``: the settings' default unless the account overrides it
    (``None``: unlimited). An override that is not a whole number >= 0 is ignored, so a bad
    hand-edited row falls back to the default rather than opening the account up."""
    overrides: Mapping[str, Any] = (user.limits or {}).get("quotas") or {}
    limits: dict[str, int | None] = {}
    for quota in Quota:
        value = overrides.get(quota.value, ...)
        if value is None:
            limits[quota.value] = None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[quota.value] = value
        else:
            limits[quota.value] = default_limit(quota, settings)
    return limits


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def _most_versions(session: Session, owner_id: uuid.UUID) -> tuple[int, str | None]:
    row = session.execute(
        select(func.count(ModelVersion.id).label("n"), Model.name)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.owner_id == owner_id)
        .group_by(Model.id, Model.name)
        .order_by(func.count(ModelVersion.id).desc(), Model.name)
        .limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, None)


def usage_of(session: Session, user: User, quota: Quota, model: Model | None = None) -> int:
    """The account's current use of ``quota``. For ``versions_per_model`` that is the versions
    of ``model``, or without one the most that any of the account's models has."""
    owner = user.id
    match quota:
        case Quota.MODELS:
            return _count(session, select(func.count(Model.id)).where(Model.owner_id == owner))
        case Quota.VERSIONS_PER_MODEL:
            if model is None:
                return _most_versions(session, owner)[0]
            return _count(
                session,
                select(func.count(ModelVersion.id)).where(ModelVersion.model_id == model.id),
            )
        case Quota.STORED_BYTES:
            return stored_bytes(session, owner).total
        case Quota.ASYNC_JOBS:
            return _count(
                session,
                select(func.count(Prediction.id)).where(
                    Prediction.owner_id == owner,
                    Prediction.kind == "async",
                    Prediction.status.in_(_ACTIVE),
                ),
            )
        case Quota.TRAININGS:
            return _count(
                session,
                select(func.count(Training.id)).where(
                    Training.owner_id == owner, Training.status.in_(_ACTIVE)
                ),
            )
        case Quota.TRAINING_SECONDS_PER_MONTH:
            return training_seconds(session, owner)


def _lock_account(session: Session, user: User) -> None:
    # FOR NO KEY UPDATE (key_share): serializes this account's quota checks without blocking
    # inserts elsewhere that merely reference the account (they take FOR KEY SHARE).
    # SQLite renders no locking clause: its transactions already hold the write lock.
    session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit} ({n} bytes)"
        size /= 1024
    raise AssertionError("unreachable")


def _detail(quota: Quota, *, limit: int, current: int, adding: int, model: Model | None) -> str:
    at_limit = (
        "the limit of your account" if current == limit else f"your account's limit is {limit}"
    )
    match quota:
        case Quota.MODELS:
            return f"You have {current} models, {at_limit}; delete one or ask for more."
        case Quota.VERSIONS_PER_MODEL:
            name = model.name if model is not None else "This model"
            return (
                f"'{name}' has {current} versions, {at_limit}; register a new model "
                "or ask for more."
            )
        case Quota.STORED_BYTES:
            return (
                f"You store {_bytes(current)}; {_bytes(adding)} more would pass your account's "
                f"limit of {_bytes(limit)}. Delete models or datasets, or ask for more."
            )
        case Quota.ASYNC_JOBS:
            return (
                f"You have {current} prediction jobs queued or running, {at_limit}; wait for "
                "one to finish or cancel one."
            )
        case Quota.TRAININGS:
            return (
                f"You have {current} trainings queued or running, {at_limit}; wait for one to "
                "finish or cancel one."
            )
        case Quota.TRAINING_SECONDS_PER_MONTH:
            return (
                f"Your trainings ran {current} s this month (UTC); your account's limit is "
                f"{limit} s a month. Wait for the next month or ask for more."
            )


def check(
    session: Session,
    user: User,
    quota: Quota,
    *,
    settings: Settings,
    adding: int = 1,
    model: Model | None = None,
) -> None:
    """Raise QuotaExceeded unless ``user`` may add ``adding`` more of ``quota`` (bytes for
    ``stored_bytes``; for ``training_seconds_per_month`` 1, which refuses once the month's
    seconds are used up). Call it in the transaction that then creates the thing: it locks
    the account's row until that transaction ends (see the module's docstring)."""
    limit = limits_for(user, settings)[quota.value]
    if limit is None:
        return
    _lock_account(session, user)
    current = usage_of(session, user, quota, model)
    if current + adding > limit:
        raise QuotaExceeded(
            quota.value,
            limit=limit,
            current=current,
            detail=_detail(quota, limit=limit, current=current, adding=adding, model=model),
        )


# What each creating route checks, in one call before its service call.


def check_model(session: Session, user: User, *, settings: Settings) -> None:
    check(session, user, Quota.MODELS, settings=settings)


def check_version(
    session: Session, user: User, *, settings: Settings, model: Model, size_bytes: int
) -> None:
    check(session, user, Quota.VERSIONS_PER_MODEL, settings=settings, model=model)
    check(session, user, Quota.STORED_BYTES, settings=settings, adding=size_bytes)


def check_dataset(session: Session, user: User, *, settings: Settings, size_bytes: int) -> None:
    check(session, user, Quota.STORED_BYTES, settings=settings, adding=size_bytes)


def check_prediction_job(
    session: Session,
    user: User,
    *,
    settings: Settings,
    spec: PredictionCreate,
    idempotency_key: str | None,
) -> None:
    """A job is queued, and its inputs stored when they are large. A retry of a job already
    made is let through: it gets that job back, whatever the quotas say now."""
    if idempotency_key and predictions.find_replay(
        session, owner=user, key=idempotency_key, body_hash=predictions.request_hash(spec)
    ):
        return
    check(session, user, Quota.ASYNC_JOBS, settings=settings)
    stored = stored_input_bytes(spec.inputs)
    if stored:
        check(session, user, Quota.STORED_BYTES, settings=settings, adding=stored)


def check_training(session: Session, user: User, *, settings: Settings, model_name: str) -> None:
    """A training is queued, and makes a model (when the caller has none of that name) or
    adds a version to it when it succeeds."""
    check(session, user, Quota.TRAININGS, settings=settings)
    check(session, user, Quota.TRAINING_SECONDS_PER_MONTH, settings=settings)
    model = session.scalar(select(Model).where(Model.name == model_name, Model.owner_id == user.id))
    if model is None:
        taken = session.scalar(select(Model.id).where(Model.name == model_name))
        if taken is None:  # someone else's name is the service's 403/404 to give
            check(session, user, Quota.MODELS, settings=settings)
    else:
        check(session, user, Quota.VERSIONS_PER_MODEL, settings=settings, model=model)


def quotas(session: Session, user: User, *, settings: Settings) -> QuotaList:
    """Each quota of the account: its limit (None: unlimited) and the current use."""
    limits = limits_for(user, settings)
    data = []
    for quota in Quota:
        model_name = None
        if quota is Quota.VERSIONS_PER_MODEL:
            current, model_name = _most_versions(session, user.id)
        else:
            current = usage_of(session, user, quota)
        data.append(
            QuotaRead(
                quota=quota.value,
                limit=limits[quota.value],
                current=current,
                unit=UNITS[quota],
                model=model_name,
            )
        )
    return QuotaList(data=data)
