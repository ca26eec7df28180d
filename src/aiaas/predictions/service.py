"""Async prediction jobs: create (checked, idempotent), read, list, cancel.

The row is written and committed first; only then is the job handed to the dispatcher, which
carries nothing but its id.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.db import Database, get_owned, utcnow
from aiaas.errors import Conflict, InvalidInput, NotFound, from_core
from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors import decode_json_inputs, encode_npy
from aiaas.pagination import PageParams, fetch_page
from aiaas.predictions import webhooks
from aiaas.predictions.directory import ResolvedVersion
from aiaas.predictions.models import CANCELED, FINISHED, QUEUED, RUNNING, SUCCEEDED, Prediction
from aiaas.predictions.schemas import PredictionCreate, PredictionRead, Timings, WebhookRead
from aiaas.quotas import Quota, Quotas
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.serving.postprocess import postprocess
from aiaas.storage import ArtifactStore

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Inputs above this many bytes (as float32) go to the artifact store; the row keeps the digest.
INLINE_INPUT_BYTES = 64 * 1024
# Outputs likewise: a row holds at most this much of them.
INLINE_OUTPUT_BYTES = 64 * 1024
# np.save's header, padded to 64 bytes, is 128 bytes for a float32 array of up to a dozen or so
# axes: job inputs kept in the store are such arrays (see _keep_inputs).
NPY_HEADER_BYTES = 128
FLOAT32_BYTES = 4
MB = 1024 * 1024


def output_bytes(config: Mapping[str, Any], rows: int) -> int:
    """What a job of ``rows`` examples produces, as float32: one output per class or target."""
    return rows * int(config.get("output_dim", 1)) * 4


def check_output_size(config: Mapping[str, Any], rows: int, *, max_bytes: int) -> None:
    """Refuse a job whose outputs would be over ``max_bytes`` (AIAAS_MAX_OUTPUT_MB)."""
    size = output_bytes(config, rows)
    if size > max_bytes:
        msg = (
            f"the outputs of {rows} row(s) would take {size / MB:.1f} MB, over the limit of "
            f"{max_bytes / MB:g} MB per job; send fewer rows per job"
        )
        raise InvalidInput(
            f"The job's outputs would be too large: {msg}.",
            errors=[{"loc": ["body", "inputs"], "msg": msg}],
        )


def request_hash(spec: PredictionCreate) -> str:
    # Of the parsed request, so the same body with other whitespace or key order matches.
    canonical = orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def find_replay(session: Session, *, owner: User, key: str, body_hash: str) -> Prediction | None:
    """The job an earlier request with this Idempotency-Key made, if any (409 if it differs)."""
    job = session.scalar(
        select(Prediction).where(Prediction.owner_id == owner.id, Prediction.idempotency_key == key)
    )
    if job is None:
        return None
    if job.created_at < utcnow() - IDEMPOTENCY_WINDOW:
        # Expired: free the key for this new request.
        job.idempotency_key = None
        session.commit()
        return None
    if job.request_hash != body_hash:
        raise Conflict("This Idempotency-Key was used with a different request body.")
    return job


def create_job(
    session: Session,
    *,
    owner: User,
    spec: PredictionCreate,
    store: ArtifactStore,
    max_rows: int,
    allow_private_webhooks: bool,
    idempotency_key: str | None,
    max_output_bytes: int,
) -> tuple[Prediction, bool]:
    """Returns (job, created); created is False for an idempotent replay."""
    body_hash = request_hash(spec)
    if idempotency_key:
        replay = find_replay(session, owner=owner, key=idempotency_key, body_hash=body_hash)
        if replay is not None:
            return replay, False
    model = registry.readable_model(session, name=spec.model, user=owner)
    ref = spec.version if spec.version is not None else versions.default_reference(session, model)
    version = versions.resolve_version(session, model=model, ref=ref)
    try:
        batch = decode_json_inputs(
            spec.inputs, shape=tuple(version.input_shape), max_rows=max_rows, loc=("body", "inputs")
        )
    except InputInvalid as exc:
        raise from_core(exc) from None
    check_output_size(version.config, int(batch.shape[0]), max_bytes=max_output_bytes)
    if spec.webhook is not None:
        try:
            webhooks.check_url(str(spec.webhook), allow_private=allow_private_webhooks)
        except webhooks.WebhookRefused as exc:
            raise InvalidInput(
                f"Webhook refused: {exc}",
                errors=[{"loc": ["body", "webhook"], "msg": str(exc)}],
            ) from None

    now = utcnow()
    job = Prediction(
        owner_id=owner.id,
        model_id=model.id,
        model_name=model.name,
        version=version.number,
        kind="async",
        status=QUEUED,
        input_rows=int(batch.shape[0]),
        idempotency_key=idempotency_key,
        request_hash=body_hash,
        webhook_url=str(spec.webhook) if spec.webhook else None,
        created_at=now,
        dispatched_at=now,
    )
    _keep_inputs(job, batch, store=store)
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent request with the same key won
        session.rollback()
        if idempotency_key:
            replay = find_replay(session, owner=owner, key=idempotency_key, body_hash=body_hash)
            if replay is not None:
                return replay, False
        raise Conflict("A concurrent request conflicted with this one; retry.") from exc
    return job, True


def record_sync(
    database: Database,
    store: ArtifactStore,
    ident: str,
    user_id: uuid.UUID,
    resolved: ResolvedVersion,
    inputs: np.ndarray,
    outputs: np.ndarray,
) -> None:
    """Keep a sync prediction (its model captures inputs) so that feedback can name it."""
    now = utcnow()
    job = Prediction(
        id=uuid.UUID(ident),
        owner_id=user_id,
        model_id=resolved.model_id,
        model_name=resolved.model,
        version=resolved.version,
        kind="sync",
        status=SUCCEEDED,
        input_rows=int(inputs.shape[0]),
        outputs=outputs.tolist(),
        predictions=postprocess(resolved.spec, outputs),
        created_at=now,
        started_at=now,
        finished_at=now,
    )
    _keep_inputs(job, inputs, store=store)
    with database.session() as session:
        session.add(job)
        session.commit()


def _keep_inputs(job: Prediction, batch: np.ndarray, *, store: ArtifactStore) -> None:
    if batch.nbytes > INLINE_INPUT_BYTES:
        job.inputs_sha256 = store.put_bytes(encode_npy(batch)).sha256
    else:
        job.inputs = batch.tolist()


def keep_outputs(outputs: np.ndarray, *, store: ArtifactStore) -> dict[str, Any]:
    """The row's values for these outputs: inline when small, else a digest in the store."""
    if outputs.nbytes > INLINE_OUTPUT_BYTES:
        sha = store.put_bytes(encode_npy(outputs.astype(np.float32, copy=False))).sha256
        return {"outputs": None, "outputs_sha256": sha}
    return {"outputs": outputs.tolist(), "outputs_sha256": None}


def load_outputs(job: Prediction, *, store: ArtifactStore) -> list[Any] | None:
    if job.outputs_sha256:
        stored = np.load(io.BytesIO(store.get_bytes(job.outputs_sha256)), allow_pickle=False)
        rows: list[Any] = stored.tolist()
        return rows
    return job.outputs


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
    return NPY_HEADER_BYTES + payload if payload > INLINE_INPUT_BYTES else 0


def check_quotas(
    session: Session,
    quotas: Quotas,
    *,
    owner: User,
    spec: PredictionCreate,
    idempotency_key: str | None,
) -> None:
    """A job is queued, and its inputs stored when they are large. A retry of a job already
    made is let through: it gets that job back, whatever the quotas say now."""
    if idempotency_key and find_replay(
        session, owner=owner, key=idempotency_key, body_hash=request_hash(spec)
    ):
        return
    quotas.check(session, owner, Quota.ASYNC_JOBS)
    stored = stored_input_bytes(spec.inputs)
    if stored:
        quotas.check(session, owner, Quota.STORED_BYTES, adding=stored)


def expire_finished(
    database: Database,
    store: ArtifactStore,
    *,
    older_than: timedelta,
    held: Callable[[Session, str], bool],
    limit: int = 500,
) -> int:
    """Drop the inputs and outputs of async jobs finished longer ago than ``older_than``
    (their status and timings stay); release the blobs for which ``held`` (which sees every
    table: ``aiaas.blobs.held``) says no row refers to them any more. Returns how many jobs
    expired."""
    cutoff = utcnow() - older_than
    with database.session() as session:
        jobs = list(
            session.scalars(
                select(Prediction)
                .where(
                    Prediction.kind == "async",
                    Prediction.finished_at < cutoff,
                    Prediction.expired_at.is_(None),
                    # A webhook still to send carries the outputs: expire after it.
                    Prediction.webhook_due_at.is_(None),
                )
                .limit(limit)
            )
        )
        blobs = {sha for job in jobs for sha in (job.inputs_sha256, job.outputs_sha256) if sha}
        now = utcnow()
        for job in jobs:
            job.inputs = job.outputs = job.predictions = None
            job.inputs_sha256 = job.outputs_sha256 = None
            job.expired_at = now
        session.commit()
        for sha in blobs:
            if not held(session, sha):
                store.delete(sha)
        session.rollback()
    return len(jobs)


def get_job(session: Session, *, owner: User, job_id: uuid.UUID) -> Prediction:
    return get_owned(
        session, Prediction, job_id, owner_id=owner.id, missing=NotFound("No such prediction.")
    )


def list_jobs(
    session: Session, *, owner: User, params: PageParams
) -> tuple[list[Prediction], str | None]:
    return fetch_page(
        session,
        select(Prediction).where(Prediction.owner_id == owner.id),
        params,
    )


def cancel_job(session: Session, *, job: Prediction) -> Prediction:
    if job.status in FINISHED:
        raise Conflict(f"The prediction already finished ({job.status}).")
    result = session.execute(
        update(Prediction)
        .where(Prediction.id == job.id, Prediction.status.in_([QUEUED, RUNNING]))
        .values(status=CANCELED, finished_at=utcnow(), lease_expires_at=None)
    )
    session.commit()
    session.refresh(job)
    if result.rowcount == 0 and job.status != CANCELED:  # type: ignore[attr-defined]
        raise Conflict(f"The prediction already finished ({job.status}).")
    return job


def load_inputs(job: Prediction, *, store: ArtifactStore) -> np.ndarray:
    if job.inputs_sha256:
        stored: np.ndarray = np.load(
            io.BytesIO(store.get_bytes(job.inputs_sha256)), allow_pickle=False
        )
        return stored
    return np.asarray(job.inputs, dtype=np.float32)


def to_read(job: Prediction, *, store: ArtifactStore | None = None) -> PredictionRead:
    """The job's document; outputs kept in the artifact store are read from ``store``."""
    queue_s = (job.started_at - job.created_at).total_seconds() if job.started_at else None
    total_s = (job.finished_at - job.created_at).total_seconds() if job.finished_at else None
    return PredictionRead(
        id=job.id,
        status=job.status,
        model=job.model_name,
        version=job.version,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        outputs=load_outputs(job, store=store) if store is not None else job.outputs,
        predictions=job.predictions,
        error=job.error,
        webhook=WebhookRead(
            url=job.webhook_url,
            attempts=job.webhook_attempts,
            last_status=job.webhook_last_status,
            delivered_at=job.webhook_delivered_at,
        )
        if job.webhook_url
        else None,
        timings=Timings(queue_s=queue_s, compute_s=job.compute_s, total_s=total_s),
        feedback=job.feedback,
        expired_at=job.expired_at,
    )
