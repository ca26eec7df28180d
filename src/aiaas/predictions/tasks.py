"""Task code for async predictions, the same under both transports.

Status changes are compare-and-set updates on the job row, so a job delivered twice (a worker
killed after finishing but before acknowledging, a reconciler requeue) is computed at most once
more and finished exactly once; outputs computed after a cancel are dropped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import orjson
from sqlalchemy import func, or_, select, update

from aiaas.accounts.models import User
from aiaas.db import Database, utcnow
from aiaas.predictions import webhooks
from aiaas.predictions.models import FAILED, QUEUED, RUNNING, SUCCEEDED, Prediction
from aiaas.predictions.service import load_inputs, to_read
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelVersion
from aiaas.serving.runtime import postprocess
from aiaas.worker.context import WorkerContext

log = logging.getLogger(__name__)

Task = Callable[[WorkerContext, str], object]


def claim(ctx: WorkerContext, job_id: uuid.UUID) -> int | None:
    """Mark the job running for this attempt; None if it is finished or held by a live lease."""
    now = utcnow()
    lease = now + timedelta(seconds=ctx.settings.job_lease_s)
    with ctx.database.session() as session:
        attempts = session.scalar(select(Prediction.attempts).where(Prediction.id == job_id))
        if attempts is None:
            return None
        result = session.execute(
            update(Prediction)
            .where(
                Prediction.id == job_id,
                Prediction.attempts == attempts,
                or_(
                    Prediction.status == QUEUED,
                    (Prediction.status == RUNNING) & (Prediction.lease_expires_at < now),
                ),
            )
            .values(status=RUNNING, attempts=attempts + 1, started_at=now, lease_expires_at=lease)
        )
        session.commit()
        return attempts + 1 if result.rowcount == 1 else None  # type: ignore[attr-defined]


def run_prediction_job(ctx: WorkerContext, job_id: str) -> str:
    """Compute one async job. Returns the status it ended in (or 'skipped'/'dropped')."""
    ident = uuid.UUID(job_id)
    attempt = claim(ctx, ident)
    if attempt is None:
        return "skipped"
    # Read what the job needs in one short transaction; compute outside any.
    with ctx.database.session() as session:
        job = session.get(Prediction, ident)
        assert job is not None
        model = session.get(Model, job.model_id)
        version = session.scalar(
            select(ModelVersion).where(
                ModelVersion.model_id == job.model_id, ModelVersion.number == job.version
            )
        )
        spec = (
            versions.serving_spec(
                model,
                version,
                default_max_batch_size=ctx.settings.max_batch_size,
                default_max_delay_ms=ctx.settings.max_delay_ms,
            )
            if model is not None and version is not None
            else None
        )
        model_name, number, webhook = job.model_name, job.version, job.webhook_url
        ctx.metrics.prediction_latency.labels("queue").observe(
            max((utcnow() - job.created_at).total_seconds(), 0.0)
        )
        inputs: np.ndarray | None = None
        load_error: Exception | None = None
        try:
            inputs = load_inputs(job, store=ctx.store)
        except Exception as exc:  # reported as the job's error below
            load_error = exc

    values: dict[str, object]
    start = time.perf_counter()
    ctx.metrics.jobs_in_flight.inc()
    try:
        if spec is None:
            raise LookupError("the model version was deleted")
        if inputs is None:
            raise RuntimeError(f"the job's inputs could not be read: {load_error}")
        outputs = ctx.runtime(spec).predict(inputs)
        ctx.metrics.batch_size.observe(int(outputs.shape[0]))
        values = {
            "status": SUCCEEDED,
            "outputs": outputs.tolist(),
            "predictions": postprocess(spec, outputs),
            "error": None,
        }
    except Exception as exc:
        log.warning("prediction %s failed: %s", job_id, exc)
        values = {"status": FAILED, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        ctx.metrics.jobs_in_flight.dec()
    compute = time.perf_counter() - start
    ctx.metrics.prediction_latency.labels("compute").observe(compute)

    with ctx.database.session() as session:
        result = session.execute(
            update(Prediction)
            .where(
                Prediction.id == ident,
                Prediction.status == RUNNING,
                Prediction.attempts == attempt,
            )
            .values(**values, compute_s=compute, finished_at=utcnow(), lease_expires_at=None)
        )
        session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return "dropped"  # canceled meanwhile, or taken over by a later attempt
    ctx.metrics.predictions.labels(model_name, str(number), str(values["status"])).inc()
    if webhook:
        ctx.schedule_webhook(job_id, 0.0)
    return str(values["status"])


def deliver_webhook(ctx: WorkerContext, job_id: str) -> bool:
    """One delivery attempt; schedules the next one on failure. True once delivered."""
    with ctx.database.session() as session:
        job = session.get(Prediction, uuid.UUID(job_id))
        if job is None or not job.webhook_url or job.webhook_delivered_at is not None:
            return job is not None and job.webhook_delivered_at is not None
        owner = session.get(User, job.owner_id)
        assert owner is not None
        body = orjson.dumps(to_read(job).model_dump(mode="json"))
        attempt = webhooks.deliver(
            job.webhook_url,
            body,
            secret=owner.webhook_secret,
            allow_private=ctx.settings.webhook_allow_private,
        )
        job.webhook_attempts += 1
        job.webhook_last_status = attempt.status
        if attempt.delivered:
            job.webhook_delivered_at = utcnow()
        retries_done = job.webhook_attempts - 1
        session.commit()
    if not attempt.delivered:
        log.info("webhook for %s not delivered: %s", job_id, attempt.error)
        if retries_done < len(webhooks.RETRY_DELAYS_S):
            ctx.schedule_webhook(job_id, float(webhooks.RETRY_DELAYS_S[retries_done]))
    return attempt.delivered


def stale_jobs(database: Database, *, requeue_after_s: float) -> list[str]:
    """Take the jobs to publish again: running past their lease (the worker vanished), or
    queued and last published more than ``requeue_after_s`` ago (the broker lost the message).

    Each one is put back to queued with ``dispatched_at`` set to now, in a compare-and-set
    update, so the next pass, of this gateway or another, leaves it alone until it is stale
    again: a long backlog is not published twice over.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=requeue_after_s)
    stale = or_(
        (Prediction.status == RUNNING) & (Prediction.lease_expires_at < now),
        (Prediction.status == QUEUED)
        & (func.coalesce(Prediction.dispatched_at, Prediction.created_at) <= cutoff),
    )
    taken: list[str] = []
    with database.session() as session:
        candidates = list(
            session.scalars(select(Prediction.id).where(Prediction.kind == "async", stale))
        )
        for ident in candidates:
            result = session.execute(
                update(Prediction)
                .where(Prediction.id == ident, stale)
                .values(status=QUEUED, dispatched_at=now, lease_expires_at=None)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                taken.append(str(ident))
        session.commit()
    return taken
