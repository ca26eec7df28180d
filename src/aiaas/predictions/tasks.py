"""Task code for async predictions, the same under both transports.

Status changes are compare-and-set updates on the job row, so a job delivered twice (a worker
killed after finishing but before acknowledging, a reconciler requeue) is computed at most once
more and finished exactly once; outputs computed after a cancel are dropped.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np
from sqlalchemy import select, update

from aiaas import jobs
from aiaas.context import WorkerContext
from aiaas.db import utcnow
from aiaas.errors import InvalidInput
from aiaas.predictions.models import FAILED, SUCCEEDED, Prediction
from aiaas.predictions.service import check_output_size, keep_outputs, load_inputs
from aiaas.registry import versions
from aiaas.registry.models import Model, ModelVersion
from aiaas.serving.postprocess import postprocess

log = logging.getLogger(__name__)


def run_prediction_job(ctx: WorkerContext, job_id: str) -> str:
    """Compute one async job. Returns the status it ended in (or 'skipped'/'dropped')."""
    ident = uuid.UUID(job_id)
    attempt = jobs.claim(ctx.database, Prediction, ident, lease_s=ctx.settings.job_lease_s)
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
    max_output = int(ctx.settings.max_output_mb * 1024 * 1024)
    start = time.perf_counter()
    ctx.metrics.jobs_in_flight.inc()
    try:
        if spec is None:
            raise LookupError("the model version was deleted")
        if inputs is None:
            raise RuntimeError(f"the job's inputs could not be read: {load_error}")
        # Refused at creation already; checked again in case the limit was lowered since.
        check_output_size(spec.config, int(inputs.shape[0]), max_bytes=max_output)
        outputs = ctx.runtime(spec).predict(inputs)
        ctx.metrics.batch_size.observe(int(outputs.shape[0]))
        values = {
            "status": SUCCEEDED,
            **keep_outputs(outputs, store=ctx.store),
            "predictions": postprocess(spec, outputs),
            "error": None,
        }
    except InvalidInput as exc:
        values = {"status": FAILED, "error": exc.detail}
    except Exception as exc:
        log.warning("prediction %s failed: %s", job_id, exc)
        values = {"status": FAILED, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        ctx.metrics.jobs_in_flight.dec()
    compute = time.perf_counter() - start
    ctx.metrics.prediction_latency.labels("compute").observe(compute)

    finished = utcnow()
    if webhook:
        # Due in the same update that finishes the job: no restart can fall between the two.
        values["webhook_due_at"] = finished
    with ctx.database.session() as session:
        result = session.execute(
            update(Prediction)
            .where(*jobs.holds(Prediction, ident, attempt))
            .values(**values, compute_s=compute, finished_at=finished, lease_expires_at=None)
        )
        session.commit()
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return "dropped"  # canceled meanwhile, or taken over by a later attempt
    ctx.metrics.predictions.labels(model_name, str(number), str(values["status"])).inc()
    ctx.usage.record(
        job.owner_id,
        job.model_id,
        rows=job.input_rows,
        compute_s=compute,
        error=values["status"] == FAILED,
    )
    if webhook:
        ctx.schedule_webhook(job_id, 0.0)
    return str(values["status"])


# Async jobs only: a sync prediction's row is a record written after its answer.
PREDICTION_JOB = jobs.JobKind(
    task="aiaas.run_prediction_job",
    queue=jobs.PREDICT_QUEUE,
    run=run_prediction_job,
    table=Prediction,
    where=(Prediction.kind == "async",),
)
