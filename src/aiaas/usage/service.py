"""Usage figures of one account over a period: predictions per model and trainings (from the
meters' flushed rows plus what this process's meter holds unflushed) and the bytes it stores
now."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import astuple
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Select, cast, func, select
from sqlalchemy.orm import Session

from aiaas.errors import InvalidInput
from aiaas.metering.meter import Counts, UsageMeter, hour_of, hour_start
from aiaas.metering.models import UsageHour
from aiaas.registry.models import Model
from aiaas.usage.counting import stored_bytes
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


# The counted figures in Counts' order, and their zero (the type each sum comes back as).
FIGURES = (
    UsageHour.predictions,
    UsageHour.rows,
    UsageHour.compute_s,
    UsageHour.errors,
    UsageHour.trainings,
    UsageHour.training_compute_s,
)
ZERO = astuple(Counts())


def _summed(session: Session, granularity: Granularity) -> Select[*tuple[Any, ...]]:
    """Each model's figures per hour (the rows as stored) or per day (summed by the database:
    a month of a busy account is thousands of hourly rows, read on every view of its usage).
    A day is a whole number of days since the epoch, from each backend's own epoch seconds."""
    if granularity == "hour":
        return select(UsageHour.model_id, UsageHour.hour, *FIGURES)
    hour = UsageHour.hour
    seconds = (
        func.strftime("%s", hour)
        if session.get_bind().dialect.name == "sqlite"
        else func.extract("epoch", hour)
    )
    day = (cast(seconds, BigInteger) // 86400).label("day")
    return select(UsageHour.model_id, day, *(func.sum(f) for f in FIGURES)).group_by(
        UsageHour.model_id, day
    )


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

    # Hours are counted whole: a period starting mid-hour includes that hour.
    first_hour = hour_of(start)
    for model_id, at, *sums in session.execute(
        _summed(session, granularity).where(
            UsageHour.account_id == account_id, UsageHour.hour >= first_hour, UsageHour.hour < end
        )
    ):
        per_model[model_id][at if granularity == "hour" else hour_start(at * 24)].add(
            Counts(*(type(default)(value or 0) for default, value in zip(ZERO, sums, strict=True)))
        )
    for (model_id, hour), counts in meter.pending(account_id).items():
        if first_hour <= hour < end:
            per_model[model_id][_bucket(hour, granularity)].add(counts)
    names: dict[uuid.UUID, str] = {}
    if per_model:
        query = select(Model.id, Model.name).where(Model.id.in_(list(per_model)))
        names = dict(session.execute(query).all())

    models = []
    trainings: dict[datetime, Counts] = defaultdict(Counts)
    for model_id, buckets in per_model.items():
        total = Counts()
        rows = []
        for at in sorted(buckets):
            counts = buckets[at]
            total.add(counts)
            if counts.trainings or counts.training_compute_s:
                trainings[at].add(counts)
            if counts.predictions:
                rows.append(_prediction_bucket(at, counts))
        if rows:
            models.append(
                ModelUsage(
                    model=names.get(model_id, "(deleted)"),
                    model_id=model_id,
                    buckets=rows,
                    totals=_prediction_bucket(start, total),
                )
            )
    models.sort(key=lambda m: (m.model, m.model_id))
    stored = stored_bytes(session, account_id)
    return UsageRead(
        from_=start,
        to=end,
        granularity=granularity,
        models=models,
        trainings=TrainingUsage(
            count=sum(b.trainings for b in trainings.values()),
            compute_s=sum(b.training_compute_s for b in trainings.values()),
            buckets=[
                TrainingBucket(start=at, count=b.trainings, compute_s=b.training_compute_s)
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
