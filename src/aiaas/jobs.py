"""Leases on job rows, shared by prediction jobs and trainings.

A job row is the source of truth: a worker takes it with a compare-and-set update that bumps
``attempts`` and sets a lease, renews the lease while it works, and writes its result only if
its attempt still holds the row. Whatever is running past its lease (the worker vanished) or
queued long after it was published (the broker lost the message) is taken back and published
again by the reconciler.

Which kinds of job there are is not this module's business: each domain describes its own as a
:class:`JobKind` (``predictions.tasks.PREDICTION_JOB``, ``trainings.tasks.TRAINING``) and the
table of them (``aiaas.tasks``) is handed to the dispatcher and to ``aiaas worker``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, func, or_, select, update

from aiaas.context import WorkerContext
from aiaas.db import Database, utcnow

# The queues workers listen on: sync batches and async jobs; trainings.
PREDICT_QUEUE = "predict"
TRAINING_QUEUE = "training"
QUEUES = (PREDICT_QUEUE, TRAINING_QUEUE)
# Headers of a job's task message: the id of the HTTP request that made the job, and its
# span's W3C traceparent when tracing is on (the worker's log lines and spans name them).
REQUEST_ID_TASK_HEADER = "aiaas_request_id"
TRACEPARENT_TASK_HEADER = "aiaas_traceparent"

# The life of every job row (prediction jobs, trainings).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "canceled",
)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELED})


class JobRow(Protocol):
    """What a leased job table has (``Prediction``, ``Training``)."""

    id: Any
    status: Any
    attempts: Any
    lease_expires_at: Any
    dispatched_at: Any
    created_at: Any
    started_at: Any


def claim(
    database: Database, entity: type[JobRow], job_id: uuid.UUID, *, lease_s: float
) -> int | None:
    """Mark the job running for a new attempt; its number, or None if the job is finished or
    held by a live lease."""
    now = utcnow()
    with database.session() as session:
        attempts = session.scalar(select(entity.attempts).where(entity.id == job_id))
        if attempts is None:
            return None
        result = session.execute(
            update(entity)
            .where(
                entity.id == job_id,
                entity.attempts == attempts,
                or_(
                    entity.status == QUEUED,
                    (entity.status == RUNNING) & (entity.lease_expires_at < now),
                ),
            )
            .values(
                status=RUNNING,
                attempts=attempts + 1,
                started_at=func.coalesce(entity.started_at, now),
                lease_expires_at=now + timedelta(seconds=lease_s),
            )
        )
        session.commit()
        return attempts + 1 if result.rowcount == 1 else None  # type: ignore[attr-defined]


def holds(entity: type[JobRow], job_id: uuid.UUID, attempt: int) -> Sequence[ColumnElement[bool]]:
    """The conditions under which ``attempt`` still owns the running job."""
    return (entity.id == job_id, entity.status == RUNNING, entity.attempts == attempt)


def renew(
    database: Database, entity: type[JobRow], job_id: uuid.UUID, attempt: int, *, lease_s: float
) -> bool:
    """Extend the lease; False when the job was canceled or taken over meanwhile."""
    with database.session() as session:
        result = session.execute(
            update(entity)
            .where(*holds(entity, job_id, attempt))
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def take_stale(
    database: Database,
    entity: type[JobRow],
    *,
    requeue_after_s: float,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[str]:
    """Take the jobs to publish again: running past their lease, or queued and last published
    more than ``requeue_after_s`` ago.

    Each one is put back to queued with ``dispatched_at`` set to now, in a compare-and-set
    update, so the next pass, of this gateway or another, leaves it alone until it is stale
    again: a long backlog is not published twice over.
    """
    now: datetime = utcnow()
    cutoff = now - timedelta(seconds=requeue_after_s)
    stale = or_(
        (entity.status == RUNNING) & (entity.lease_expires_at < now),
        (entity.status == QUEUED)
        & (func.coalesce(entity.dispatched_at, entity.created_at) <= cutoff),
    )
    taken: list[str] = []
    with database.session() as session:
        candidates = list(session.scalars(select(entity.id).where(*where, stale)))
        for ident in candidates:
            result = session.execute(
                update(entity)
                .where(entity.id == ident, stale)
                .values(status=QUEUED, dispatched_at=now, lease_expires_at=None)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                taken.append(str(ident))
        session.commit()
    return taken


# A task: runs the job with this id in this process; returns how it ended (for the logs).
Task = Callable[[WorkerContext, str], str]


@dataclass(frozen=True, slots=True)
class JobKind:
    """One kind of job: the name its messages carry, the queue its workers listen on, the task
    that runs it, and the leased table (with the rows of it that are this kind) it lives in."""

    task: str
    queue: str
    run: Task
    table: type[JobRow]
    where: tuple[ColumnElement[bool], ...] = ()


def by_task(kinds: Sequence[JobKind]) -> Mapping[str, JobKind]:
    table = {kind.task: kind for kind in kinds}
    if len(table) != len(kinds):
        raise ValueError("two job kinds share a task name")
    return table


def reconcile(
    database: Database,
    kinds: Sequence[JobKind],
    *,
    requeue_after_s: float,
    submit: Callable[[str, str], None],
) -> int:
    """Hand every stale job of every kind (see :func:`take_stale`) to ``submit(task, job_id)``
    again; how many."""
    handed = 0
    for kind in kinds:
        for job_id in take_stale(
            database, kind.table, requeue_after_s=requeue_after_s, where=kind.where
        ):
            submit(kind.task, job_id)
            handed += 1
    return handed
