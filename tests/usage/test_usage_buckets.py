"""Usage summed per day by the database and per hour as stored: the same figures either way,
on SQLite and PostgreSQL alike (each computes the day from its own epoch seconds)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiaas.db import Database
from aiaas.metering.meter import UsageMeter
from aiaas.metering.models import UsageHour
from aiaas.usage import service
from tests.factories import add_model, add_user

DAY = datetime(2026, 12, 1, tzinfo=UTC)


def test_day_buckets_sum_the_hours_of_each_utc_day(db: Database) -> None:
    with db.session() as session:
        owner = add_user(session)
        first, second = add_model(session, owner.id), add_model(session, owner.id)
        rows = [
            (first, DAY + timedelta(hours=0), 3, 0.5),
            (first, DAY + timedelta(hours=23), 4, 0.25),
            (first, DAY + timedelta(days=1), 5, 1.0),  # the next day, at midnight
            (first, DAY + timedelta(days=1, hours=13), 6, 0.125),
            (second, DAY + timedelta(hours=5), 7, 2.0),
        ]
        for model, hour, predictions, seconds in rows:
            session.add(
                UsageHour(
                    account_id=owner.id,
                    model_id=model.id,
                    hour=hour,
                    predictions=predictions,
                    rows=2 * predictions,
                    compute_s=seconds,
                    errors=1,
                    trainings=0,
                    training_compute_s=0.0,
                )
            )
        session.commit()

        def read(granularity: str) -> dict[uuid.UUID, list[tuple[datetime, int, int, float]]]:
            report = service.usage(
                session,
                meter=UsageMeter(),
                account_id=owner.id,
                start=DAY,
                end=DAY + timedelta(days=3),
                granularity=granularity,  # type: ignore[arg-type]
            )
            return {
                m.model_id: [(b.start, b.predictions, b.rows, b.compute_s) for b in m.buckets]
                for m in report.models
            }

        days = read("day")
        assert days[first.id] == [
            (DAY, 7, 14, 0.75),
            (DAY + timedelta(days=1), 11, 22, 1.125),
        ]
        assert days[second.id] == [(DAY, 7, 14, 2.0)]
        hours = read("hour")
        assert [b[0] for b in hours[first.id]] == [r[1] for r in rows if r[0] is first]
        assert sum(b[1] for b in hours[first.id]) == sum(b[1] for b in days[first.id])
