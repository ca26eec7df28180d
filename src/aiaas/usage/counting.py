"""What an account uses, counted from the rows that hold it: models, versions, jobs in flight,
bytes in the artifact store and seconds of training. Pure reads, for the usage report and, as
:class:`RowCounter`, for :mod:`aiaas.quotas`, which decides what they allow."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from aiaas.datasets.models import Dataset
from aiaas.db import utcnow
from aiaas.jobs import QUEUED, RUNNING
from aiaas.predictions import service as predictions
from aiaas.predictions.models import Prediction
from aiaas.predictions.service import FLOAT32_BYTES, NPY_HEADER_BYTES
from aiaas.quotas import Quota
from aiaas.registry.models import Model, ModelVersion
from aiaas.trainings.models import Training

_ACTIVE = (QUEUED, RUNNING)


@dataclass(frozen=True, slots=True)
class StoredBytes:
    """What an account keeps in the artifact store, by kind."""

    weights: int
    datasets: int
    jobs: int

    @property
    def total(self) -> int:
        return self.weights + self.datasets + self.jobs


def stored_bytes(session: Session, owner_id: uuid.UUID) -> StoredBytes:
    """Bytes each reference of the account's rows holds: a blob two rows share counts twice
    (each row keeps it alive)."""
    weights = session.scalar(
        select(func.coalesce(func.sum(ModelVersion.size_bytes), 0))
        .join(Model, Model.id == ModelVersion.model_id)
        .where(Model.owner_id == owner_id)
    )
    datasets = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner_id == owner_id)
    )
    return StoredBytes(int(weights or 0), int(datasets or 0), job_payload_bytes(session, owner_id))


def job_payload_bytes(session: Session, owner_id: uuid.UUID) -> int:
    """Bytes of the account's job inputs kept in the artifact store (smaller ones live in the
    job row). Jobs have no size column: each stored input is a float32 ``.npy`` of the job's
    rows times its version's input shape, so the size is counted from those. Where the shape
    has a variable axis (or the version is gone) only the floor is known: such an input went to
    the store because it was over ``INLINE_INPUT_BYTES``."""
    per_version = (
        select(
            Prediction.model_id,
            Prediction.version,
            func.count().label("jobs"),
            func.sum(Prediction.input_rows).label("rows"),
        )
        .where(Prediction.owner_id == owner_id, Prediction.inputs_sha256.is_not(None))
        .group_by(Prediction.model_id, Prediction.version)
        .subquery()
    )
    found = session.execute(
        select(per_version.c.jobs, per_version.c.rows, ModelVersion.input_shape)
        .select_from(per_version)
        .outerjoin(
            ModelVersion,
            and_(
                ModelVersion.model_id == per_version.c.model_id,
                ModelVersion.number == per_version.c.version,
            ),
        )
    )
    total = 0
    for jobs, rows, shape in found:
        if shape and all(isinstance(d, int) for d in shape):
            total += jobs * NPY_HEADER_BYTES + int(rows) * math.prod(shape) * FLOAT32_BYTES
        else:
            total += jobs * (NPY_HEADER_BYTES + predictions.INLINE_INPUT_BYTES + 1)
    return total


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def training_seconds(session: Session, owner_id: uuid.UUID, *, now: datetime | None = None) -> int:
    """Seconds the account's trainings ran in the current calendar month (UTC): from each
    one's start (or the month's) to its end (or now, while it runs)."""
    now = now or utcnow()
    since = month_start(now)
    spans = session.execute(
        select(Training.started_at, Training.finished_at).where(
            Training.owner_id == owner_id,
            Training.started_at.is_not(None),
            or_(Training.finished_at.is_(None), Training.finished_at >= since),
        )
    )
    total = 0.0
    for started, finished in spans:
        if started is not None:  # always, by the query; mypy cannot know
            total += max(0.0, ((finished or now) - max(started, since)).total_seconds())
    return int(total)


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


class RowCounter:
    """The :class:`~aiaas.quotas.UsageCounter` the app hands its quotas."""

    def usage_of(
        self, session: Session, owner_id: uuid.UUID, quota: Quota, model_id: uuid.UUID | None
    ) -> int:
        match quota:
            case Quota.MODELS:
                return _count(
                    session, select(func.count(Model.id)).where(Model.owner_id == owner_id)
                )
            case Quota.VERSIONS_PER_MODEL:
                if model_id is None:
                    return self.most_versions(session, owner_id)[0]
                return _count(
                    session,
                    select(func.count(ModelVersion.id)).where(ModelVersion.model_id == model_id),
                )
            case Quota.STORED_BYTES:
                return stored_bytes(session, owner_id).total
            case Quota.ASYNC_JOBS:
                return _count(
                    session,
                    select(func.count(Prediction.id)).where(
                        Prediction.owner_id == owner_id,
                        Prediction.kind == "async",
                        Prediction.status.in_(_ACTIVE),
                    ),
                )
            case Quota.TRAININGS:
                return _count(
                    session,
                    select(func.count(Training.id)).where(
                        Training.owner_id == owner_id, Training.status.in_(_ACTIVE)
                    ),
                )
            case Quota.TRAINING_SECONDS_PER_MONTH:
                return training_seconds(session, owner_id)

    def most_versions(self, session: Session, owner_id: uuid.UUID) -> tuple[int, str | None]:
        row = session.execute(
            select(func.count(ModelVersion.id).label("n"), Model.name)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.owner_id == owner_id)
            .group_by(Model.id, Model.name)
            .order_by(func.count(ModelVersion.id).desc(), Model.name)
            .limit(1)
        ).first()
        return (int(row[0]), str(row[1])) if row else (0, None)
