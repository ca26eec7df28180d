"""Async prediction jobs: create (checked, idempotent), read, list, cancel.

The row is written and committed first; only then is the job handed to the dispatcher, which
carries nothing but its id.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import timedelta

import numpy as np
import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.db import Database, utcnow
from aiaas.errors import Conflict, InvalidInput, NotFound
from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors import decode_json_inputs, encode_npy
from aiaas.pagination import PageParams, fetch_page
from aiaas.predictions import webhooks
from aiaas.predictions.directory import ResolvedVersion
from aiaas.predictions.models import CANCELED, FINISHED, QUEUED, RUNNING, SUCCEEDED, Prediction
from aiaas.predictions.schemas import PredictionCreate, PredictionRead, Timings, WebhookRead
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.registry.models import ModelAlias
from aiaas.registry.schemas import DEFAULT_ALIAS, LATEST
from aiaas.serving.runtime import postprocess
from aiaas.storage import ArtifactStore

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Inputs above this many bytes (as float32) go to the artifact store; the row keeps the digest.
INLINE_INPUT_BYTES = 64 * 1024


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
) -> tuple[Prediction, bool]:
    """Returns (job, created); created is False for an idempotent replay."""
    body_hash = request_hash(spec)
    if idempotency_key:
        replay = find_replay(session, owner=owner, key=idempotency_key, body_hash=body_hash)
        if replay is not None:
            return replay, False
    model = registry.readable_model(session, name=spec.model, user=owner)
    ref: str | int = (
        spec.version
        if spec.version is not None
        else (DEFAULT_ALIAS if session.get(ModelAlias, (model.id, DEFAULT_ALIAS)) else LATEST)
    )
    version = versions.resolve_version(session, model=model, ref=ref)
    try:
        batch = decode_json_inputs(
            spec.inputs, shape=tuple(version.input_shape), max_rows=max_rows, loc=("body", "inputs")
        )
    except InputInvalid as exc:
        raise InvalidInput(exc.msg, errors=[exc.to_error()]) from None
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


def get_job(session: Session, *, owner: User, job_id: uuid.UUID) -> Prediction:
    job = session.get(Prediction, job_id)
    if job is None or job.owner_id != owner.id:
        raise NotFound("No such prediction.")
    return job


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


def to_read(job: Prediction) -> PredictionRead:
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
        outputs=job.outputs,
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
    )
