from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.db import Database
from aiaas.deps import DatabaseDep, DispatcherDep, MetricsDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.pagination import PageParams, page_params
from aiaas.quotas.deps import QuotasDep
from aiaas.trainings import service
from aiaas.trainings.models import FINISHED, Training, TrainingEvent
from aiaas.trainings.schemas import TrainingCreate, TrainingPage, TrainingRead
from aiaas.trainings.tasks import TRAINING

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}
# How often the stream looks for new events, and sends a comment so proxies keep it open.
POLL_S = 0.25
KEEPALIVE_S = 15.0

router = APIRouter(prefix="/v1", tags=["trainings"])

Trainer = Annotated[Principal, Depends(require_scope(Scope.TRAIN))]


@router.post(
    "/trainings",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**dict.fromkeys((401, 403, 404, 422), _PROBLEM)},
)
def create_training(
    body: TrainingCreate,
    principal: Trainer,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    response: Response,
) -> TrainingRead:
    """Train a new version of `model` on `dataset`; follow it at `/v1/trainings/{id}/events`."""
    service.check_quotas(session, quotas, owner=principal.user, model_name=body.model)
    training = service.create_training(
        session, owner=principal.user, spec=body, max_parameters=settings.max_model_parameters
    )
    dispatcher.submit(TRAINING.task, str(training.id))
    response.headers["Location"] = f"/v1/trainings/{training.id}"
    return service.to_read(training)


@router.get("/trainings", responses={401: _PROBLEM, 403: _PROBLEM})
def list_trainings(
    principal: Trainer,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> TrainingPage:
    rows, cursor = service.list_trainings(session, owner=principal.user, params=params)
    return TrainingPage(data=[service.to_read(t) for t in rows], next_cursor=cursor)


@router.get("/trainings/{id}", responses={**dict.fromkeys((401, 403, 404), _PROBLEM)})
def get_training(id: uuid.UUID, principal: Trainer, session: SessionDep) -> TrainingRead:
    return service.to_read(service.get_training(session, owner=principal.user, training_id=id))


@router.post(
    "/trainings/{id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**dict.fromkeys((401, 403, 404, 409), _PROBLEM)},
)
def cancel_training(
    id: uuid.UUID,
    principal: Trainer,
    session: SessionDep,
    database: DatabaseDep,
    store: StoreDep,
    metrics: MetricsDep,
) -> TrainingRead:
    """Stop a queued or running training; nothing it computes afterwards is kept."""
    training = service.get_training(session, owner=principal.user, training_id=id)
    canceled = service.cancel_training(session, training=training)
    metrics.trainings.labels("canceled").inc()
    service.drop_checkpoint(session, database, store, canceled)
    return service.to_read(canceled)


def _frame(event: TrainingEvent) -> bytes:
    data = orjson.dumps(event.data).decode()
    return f"id: {event.seq}\nevent: {event.event}\ndata: {data}\n\n".encode()


def _poll(database: Database, training_id: uuid.UUID, seq: int) -> tuple[list[TrainingEvent], bool]:
    with database.session() as session:
        # Status first: a training seen finished has all its events written already.
        training = session.get(Training, training_id)
        finished = training is None or training.status in FINISHED
        events = service.events_after(session, training_id=training_id, seq=seq)
        for event in events:
            session.expunge(event)
        return events, finished


@router.get(
    "/trainings/{id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: `epoch` per epoch, then `end`. Reconnect with "
            "`Last-Event-ID` to get what was missed.",
            "content": {"text/event-stream": {}},
        },
        **dict.fromkeys((401, 403, 404), _PROBLEM),
    },
)
def training_events(
    id: uuid.UUID,
    request: Request,
    principal: Trainer,
    session: SessionDep,
    database: DatabaseDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Live progress; a late or returning client first gets every event it has not seen."""
    service.get_training(session, owner=principal.user, training_id=id)
    # The request's session lives as long as the response: end its transaction now, or it
    # would hold SQLite's write lock for the whole stream. Polls use short sessions of their own.
    session.close()
    try:
        after = max(int(last_event_id or 0), 0)
    except ValueError:
        after = 0

    async def stream() -> AsyncIterator[bytes]:
        seq = after
        quiet_since = time.monotonic()
        while True:
            events, finished = await asyncio.to_thread(_poll, database, id, seq)
            for event in events:
                seq = event.seq
                yield _frame(event)
                if event.event == service.END:
                    return
            if events:
                quiet_since = time.monotonic()
            elif finished:
                return  # finished with no end event left to send (already seen)
            elif time.monotonic() - quiet_since > KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
