"""What the quotas count, from the rows that hold it: bytes in the artifact store and
seconds of training. Pure reads; :mod:`aiaas.quotas.service` decides what they allow."""

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
from aiaas.predictions import service as predictions
from aiaas.predictions.models import Prediction
from aiaas.registry.models import Model, ModelVersion
from aiaas.trainings.models import Training

# np.save's header, padded to 64 bytes, is 128 bytes for a float32 array of up to a dozen or so
# axes: job inputs kept in the store are such arrays (see predictions.service._keep_inputs).
NPY_HEADER_BYTES = 128
FLOAT32_BYTES = 4


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


def stored_input_bytes(inputs: Any) -> int:
    """What an async job's JSON ``inputs`` will occupy in the artifact store: 0 when they are
    small enough to stay in the job row.

    Counted along the first element of each nesting level, in time proportional to the depth
    rather than to the numbers: exact for a well-formed (rectangular) array, and a ragged one
    is refused with 422 by the decoding that follows, before anything is stored."""
    count = 1
    level = inputs
    while isinstance(level, list):
        count *= len(level)
        if not level:
            break
        level = level[0]
    payload = count * FLOAT32_BYTES
    return NPY_HEADER_BYTES + payload if payload > predictions.INLINE_INPUT_BYTES else 0


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
