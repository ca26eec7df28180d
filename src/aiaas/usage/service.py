"""Usage figures of one account over a period: predictions per model (sync ones from the
meters' rows and the local meter's unflushed counts, async ones from their job rows),
trainings (from their rows) and the bytes it stores now."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.errors import InvalidInput
from aiaas.predictions.models import FAILED, Prediction
from aiaas.quotas.counting import stored_bytes
from aiaas.registry.models import Model
from aiaas.trainings.models import Training
from aiaas.usage.meter import Counts, UsageMeter, hour_of
from aiaas.usage.models import UsageHour
from aiaas.usage.schemas import (
    Granularity,
    ModelUsage,
    PredictionBucket,
    StoredBytesRead,
    TrainingBucket,
    TrainingUsage,
    UsageRead,
)

MAX_SPAN = {"day": timedelta(days=366), "hour": timedelta(days=31)}


def _bucket(at: datetime, granularity: Granularity) -> datetime:
    hour = hour_of(at)
    return hour if granularity == "hour" else hour.replace(hour=0)


def check_period(start: datetime, end: datetime, granularity: Granularity) -> None:
    if end <= start:
        raise InvalidInput(
            "`to` must be after `from`.", errors=[{"loc": ["query", "to"], "msg": "before from"}]
        )
    if end - start > MAX_SPAN[granularity]:
        days = MAX_SPAN[granularity].days
        msg = f"at most {days} days at {granularity} granularity"
        raise InvalidInput(
            f"The period is too long: {msg}.", errors=[{"loc": ["query", "from"], "msg": msg}]
        )


def usage(
    session: Session,
    *,
    meter: UsageMeter,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    granularity: Granularity,
) -> UsageRead:
    check_period(start, end, granularity)
    per_model: dict[uuid.UUID, dict[datetime, Counts]] = defaultdict(lambda: defaultdict(Counts))
    names: dict[uuid.UUID, str] = {}

    def add(model_id: uuid.UUID, at: datetime, counts: Counts) -> None:
        per_model[model_id][_bucket(at, granularity)].add(counts)

    # Hours are counted whole: a period starting mid-hour includes that hour's sync counts.
    first_hour = hour_of(start)
    for row in session.scalars(
        select(UsageHour).where(
            UsageHour.account_id == account_id, UsageHour.hour >= first_hour, UsageHour.hour < end
        )
    ):
        add(row.model_id, row.hour, Counts(row.predictions, row.rows, row.compute_s, row.errors))
    for (model_id, hour), counts in meter.pending(account_id).items():
        if first_hour <= hour < end:
            add(model_id, hour, counts)
    for job in session.execute(
        select(
            Prediction.model_id,
            Prediction.model_name,
            Prediction.created_at,
            Prediction.input_rows,
            Prediction.compute_s,
            Prediction.status,
        ).where(
            Prediction.owner_id == account_id,
            Prediction.kind == "async",
            Prediction.created_at >= start,
            Prediction.created_at < end,
        )
    ):
        names.setdefault(job.model_id, job.model_name)
        error = job.status == FAILED
        add(job.model_id, job.created_at, Counts(1, job.input_rows, job.compute_s or 0.0, error))
    if per_model:
        for model_id, name in session.execute(
            select(Model.id, Model.name).where(Model.id.in_(list(per_model)))
        ):
            names[model_id] = name

    models = []
    for model_id, buckets in per_model.items():
        total = Counts()
        rows = []
        for at in sorted(buckets):
            counts = buckets[at]
            total.add(counts)
            rows.append(_prediction_bucket(at, counts))
        models.append(
            ModelUsage(
                model=names.get(model_id, "(deleted)"),
                model_id=model_id,
                buckets=rows,
                totals=_prediction_bucket(start, total),
            )
        )
    models.sort(key=lambda m: m.model)

    trainings: dict[datetime, list[float]] = defaultdict(lambda: [0, 0.0])
    for started, finished in session.execute(
        select(Training.started_at, Training.finished_at).where(
            Training.owner_id == account_id,
            Training.finished_at >= start,
            Training.finished_at < end,
        )
    ):
        if finished is None:
            continue
        bucket = trainings[_bucket(finished, granularity)]
        bucket[0] += 1
        bucket[1] += (finished - started).total_seconds() if started else 0.0
    stored = stored_bytes(session, account_id)
    return UsageRead(
        from_=start,
        to=end,
        granularity=granularity,
        models=models,
        trainings=TrainingUsage(
            count=int(sum(b[0] for b in trainings.values())),
            compute_s=sum(b[1] for b in trainings.values()),
            buckets=[
                TrainingBucket(start=at, count=int(b[0]), compute_s=b[1])
                for at, b in sorted(trainings.items())
            ],
        ),
        stored_bytes=StoredBytesRead(
            weights=stored.weights, datasets=stored.datasets, jobs=stored.jobs, total=stored.total
        ),
    )


def _prediction_bucket(at: datetime, counts: Counts) -> PredictionBucket:
    return PredictionBucket(
        start=at,
        predictions=counts.predictions,
        rows=counts.rows,
        compute_s=counts.compute_s,
        errors=counts.errors,
    )
