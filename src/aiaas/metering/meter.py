"""Predictions and trainings counted in memory and flushed to ``usage_hours``: no database
write per prediction.

Each process that finishes work meters it: a gateway its sync predictions (and, in embedded
mode, its async jobs and trainings), a worker its async jobs and trainings. Usage is counted
here rather than from the jobs' rows so that it outlives them (deleting a model deletes its
jobs and trainings, not what they cost).

``record`` is a dict update under a lock. ``flush`` (every ``AIAAS_USAGE_FLUSH_S`` and at
shutdown) adds the counts to their hour's row with one upsert per key; figures are exact up
to one flush interval. A flush that fails keeps its counts for the next one, but the meter
holds at most ``max_keys`` (account, model, hour) keys: past that, new keys are dropped and
counted in ``dropped`` (logged), so a database outage cannot grow it without bound.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from aiaas.db import Database
from aiaas.metering.models import UsageHour

log = logging.getLogger(__name__)

# (account, model, hour as whole hours since the epoch: cheaper than a datetime per call)
Key = tuple[uuid.UUID, uuid.UUID, int]


@dataclass(slots=True)
class Counts:
    predictions: int = 0
    rows: int = 0
    compute_s: float = 0.0
    errors: int = 0
    trainings: int = 0
    training_compute_s: float = 0.0

    def add(self, other: Counts) -> None:
        self.predictions += other.predictions
        self.rows += other.rows
        self.compute_s += other.compute_s
        self.errors += other.errors
        self.trainings += other.trainings
        self.training_compute_s += other.training_compute_s

    def copy(self) -> Counts:
        return Counts(
            self.predictions,
            self.rows,
            self.compute_s,
            self.errors,
            self.trainings,
            self.training_compute_s,
        )


def hour_of(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_start(index: int) -> datetime:
    return datetime.fromtimestamp(index * 3600, UTC)


class UsageMeter:
    def __init__(self, *, max_keys: int = 100_000) -> None:
        self._counts: dict[Key, Counts] = {}
        # Since this process started, per account: what /metrics shows (by account id only).
        self.totals: dict[uuid.UUID, Counts] = {}
        self._lock = threading.Lock()
        self._max = max_keys
        self.dropped = 0

    def record(
        self,
        account_id: uuid.UUID,
        model_id: uuid.UUID,
        *,
        rows: int,
        compute_s: float,
        error: bool,
        at: float | None = None,
    ) -> None:
        """Count one prediction (``at``: epoch seconds, default now)."""
        key = (account_id, model_id, int((time.time() if at is None else at) // 3600))
        with self._lock:
            total = self.totals.get(account_id)
            if total is None:
                total = self.totals[account_id] = Counts()
            total.predictions += 1
            total.rows += rows
            total.compute_s += compute_s
            total.errors += int(error)
            counts = self._counts.get(key)
            if counts is None:
                if len(self._counts) >= self._max:
                    self.dropped += 1
                    return
                counts = self._counts[key] = Counts()
            counts.predictions += 1
            counts.rows += rows
            counts.compute_s += compute_s
            counts.errors += int(error)

    def record_training(
        self,
        account_id: uuid.UUID,
        model_id: uuid.UUID,
        *,
        compute_s: float,
        finished: bool,
        at: float | None = None,
    ) -> None:
        """Count one attempt at a training: its compute seconds, and the training itself once
        it ``finished`` (an attempt a later one resumes adds only its seconds)."""
        key = (account_id, model_id, int((time.time() if at is None else at) // 3600))
        with self._lock:
            total = self.totals.get(account_id)
            if total is None:
                total = self.totals[account_id] = Counts()
            total.trainings += int(finished)
            total.training_compute_s += compute_s
            counts = self._counts.get(key)
            if counts is None:
                if len(self._counts) >= self._max:
                    self.dropped += 1
                    return
                counts = self._counts[key] = Counts()
            counts.trainings += int(finished)
            counts.training_compute_s += compute_s

    def pending(self, account_id: uuid.UUID) -> dict[tuple[uuid.UUID, datetime], Counts]:
        """What this meter holds for one account, not yet flushed: (model, hour) -> copies."""
        with self._lock:
            return {
                (key[1], hour_start(key[2])): c.copy()
                for key, c in self._counts.items()
                if key[0] == account_id
            }

    def flush(self, database: Database) -> int:
        """Add what was counted to the database; returns how many keys were written."""
        with self._lock:
            taken, self._counts = self._counts, {}
        if not taken:
            return 0
        try:
            with database.session() as session:
                dialect = session.get_bind().dialect.name
                insert = pg_insert if dialect == "postgresql" else sqlite_insert
                for (account_id, model_id, hour), counts in taken.items():
                    statement = insert(UsageHour).values(
                        account_id=account_id,
                        model_id=model_id,
                        hour=hour_start(hour),
                        predictions=counts.predictions,
                        rows=counts.rows,
                        compute_s=counts.compute_s,
                        errors=counts.errors,
                        trainings=counts.trainings,
                        training_compute_s=counts.training_compute_s,
                    )
                    excluded = statement.excluded
                    session.execute(
                        statement.on_conflict_do_update(
                            index_elements=["account_id", "model_id", "hour"],
                            set_={
                                "predictions": UsageHour.predictions + excluded.predictions,
                                "rows": UsageHour.rows + excluded.rows,
                                "compute_s": UsageHour.compute_s + excluded.compute_s,
                                "errors": UsageHour.errors + excluded.errors,
                                "trainings": UsageHour.trainings + excluded.trainings,
                                "training_compute_s": (
                                    UsageHour.training_compute_s + excluded.training_compute_s
                                ),
                            },
                        )
                    )
                session.commit()
        except Exception:
            self._restore(taken)
            raise
        if self.dropped:
            log.warning(
                "usage meter full: %d predictions or trainings were not counted", self.dropped
            )
            self.dropped = 0
        return len(taken)

    def _restore(self, taken: dict[Key, Counts]) -> None:
        with self._lock:
            for key, counts in taken.items():
                mine = self._counts.get(key)
                if mine is None:
                    if len(self._counts) >= self._max:
                        self.dropped += counts.predictions + counts.trainings
                        continue
                    self._counts[key] = counts
                else:
                    mine.add(counts)


class AccountUsageCollector:
    """The meter's per-account totals since this process started on /metrics (the gateway's
    and each worker's), labelled by account id, never a name: a sum over the processes gives
    the figures ``GET /v1/usage`` reports."""

    def __init__(self, meter: UsageMeter) -> None:
        self._meter = meter

    def collect(self) -> Iterator[Metric]:
        with self._meter._lock:
            totals = {account: c.copy() for account, c in self._meter.totals.items()}
        families = {
            "predictions": CounterMetricFamily(
                "aiaas_account_predictions",
                "Predictions (sync and async) per account.",
                labels=["account"],
            ),
            "rows": CounterMetricFamily(
                "aiaas_account_rows", "Rows predicted per account.", labels=["account"]
            ),
            "compute_s": CounterMetricFamily(
                "aiaas_account_compute_seconds",
                "Seconds predictions took per account.",
                labels=["account"],
            ),
            "errors": CounterMetricFamily(
                "aiaas_account_errors", "Failed predictions per account.", labels=["account"]
            ),
            "trainings": CounterMetricFamily(
                "aiaas_account_trainings", "Trainings that ended per account.", labels=["account"]
            ),
            "training_compute_s": CounterMetricFamily(
                "aiaas_account_training_compute_seconds",
                "Seconds trainings ran per account.",
                labels=["account"],
            ),
        }
        for account, counts in totals.items():
            for field, family in families.items():
                family.add_metric([str(account)], float(getattr(counts, field)))
        yield from families.values()
