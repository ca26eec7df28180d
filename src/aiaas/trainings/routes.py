from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.deps import DatabaseDep, DispatcherDep, MetricsDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.pagination import PageParams, page_params
from aiaas.quotas.deps import QuotasDep
from aiaas.trainings import service
from aiaas.trainings.schemas import TrainingCreate, TrainingPage, TrainingRead
from aiaas.trainings.streaming import event_stream
from aiaas.trainings.tasks import start_training

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

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
    training = start_training(
        session,
        quotas,
        dispatcher,
        owner=principal.user,
        spec=body,
        max_parameters=settings.max_model_parameters,
    )
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
    canceled = service.cancel_owned(
        session, database, store, metrics, owner=principal.user, training_id=id
    )
    return service.to_read(canceled)


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
    return event_stream(request, database, id, last_event_id)
