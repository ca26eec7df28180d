"""Prediction routes: sync predict, async jobs, feedback.

Who may call predict: any login token, or an API key with the ``predict`` scope (``Predictor``
below, ``accounts.deps.require_scope``), on a model its account owns or a public one; another
account's private model is a 404, as if it did not exist (``predictions.directory``). The fast
lane that answers sync predictions before routing (``fastlane.PredictFastLane``) asks the same
two questions in ``sync.PredictPath.caller`` and ``ModelDirectory.resolve``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from starlette.responses import Response

from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.deps import DispatcherDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import PROBLEM_CONTENT_TYPE, Forbidden
from aiaas.pagination import PageParams, page_params
from aiaas.predictions import compare, feedback, service
from aiaas.predictions.schemas import (
    AliasComparison,
    FeedbackCreate,
    PredictionCreate,
    PredictionPage,
    PredictionRead,
)
from aiaas.predictions.sync import JSON, NPY, PredictPath
from aiaas.predictions.tasks import PREDICTION_JOB
from aiaas.quotas.deps import QuotasDep
from aiaas.registry import service as registry

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", tags=["predictions"])


def inputs_body(fields: Mapping[str, Any] | None = None, **example: Any) -> dict[str, Any]:
    """The OpenAPI request body of a route that takes predict's inputs, as JSON (``inputs``
    and the route's other ``fields``' schemas) or as .npy; for ``openapi_extra``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "inputs": {
                                "description": "One example of the version's input shape, "
                                "or a list of them.",
                                "type": "array",
                            },
                            **(fields or {}),
                        },
                    },
                    "example": {"inputs": [[5.1, 3.5, 1.4, 0.2]], **example},
                },
                NPY: {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }


VersionRef = Annotated[
    str | None,
    Query(description="Version number or alias; default `production` if set, else `latest`."),
]


@router.post(
    "/models/{name}/predict",
    openapi_extra=inputs_body(),
    response_class=Response,
    responses={
        200: {
            "description": '`{"id", "model", "version", "outputs", "predictions"}`, or the '
            "outputs as .npy with `Accept: application/x-npy`.",
            "content": {JSON: {}, NPY: {}},
        },
        **dict.fromkeys((401, 403, 404, 413, 415, 422, 504), _PROBLEM),
    },
)
async def predict(
    name: str,
    request: Request,
    version: VersionRef = None,
) -> Response:
    """Run the model on the inputs and answer with its outputs (batched with concurrent calls).

    ``fastlane.PredictFastLane`` answers this path before routing reaches here; the route gives
    it its OpenAPI entry, and its body gives the same answer should the lane be taken out."""
    path: PredictPath = request.app.state.predict_path
    headers = request.headers
    result = await path.predict(
        name=name,
        ref=version,
        authorization=headers.get("authorization"),
        content_type=headers.get("content-type"),
        body=await request.body(),
        routing_key=headers.get("aiaas-routing-key"),
    )
    payload, fields = result.render(headers.get("accept"))
    return Response(payload, headers=fields)


Predictor = Annotated[Principal, Depends(require_scope(Scope.PREDICT))]
Reader = Annotated[Principal, Depends(require_scope(Scope.MODELS_READ))]


@router.get(
    "/models/{name}/aliases/{alias}/compare",
    responses={**dict.fromkeys((401, 403, 404), _PROBLEM)},
)
def compare_alias(
    name: str, alias: str, request: Request, principal: Reader, session: SessionDep
) -> AliasComparison:
    """How the versions behind ALIAS fare since it was set: per version, requests, errors,
    latency, a shadow's agreement with the answering version, and accuracy on feedback.
    The model's owner only: the figures describe its traffic."""
    model = registry.readable_model(session, name=name, user=principal.user)
    if model.owner_id != principal.user.id:
        raise Forbidden(f"Only the owner of '{name}' can read its roll-out figures.")
    path: PredictPath = request.app.state.predict_path
    return AliasComparison.model_validate(
        compare.compare(session, model=model, alias=alias, stats=path.rollouts)
    )


@router.post(
    "/predictions",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**dict.fromkeys((401, 403, 404, 409, 413, 422), _PROBLEM)},
)
def create_prediction(
    body: PredictionCreate,
    principal: Predictor,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    store: StoreDep,
    dispatcher: DispatcherDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=255, description="Retries with the same key and body get the same job."),
    ] = None,
) -> PredictionRead:
    """Queue a prediction job; poll it, or get it POSTed to `webhook` when it finishes."""
    service.check_quotas(
        session, quotas, owner=principal.user, spec=body, idempotency_key=idempotency_key
    )
    job, created = service.create_job(
        session,
        owner=principal.user,
        spec=body,
        store=store,
        max_rows=settings.max_batch_rows,
        allow_private_webhooks=settings.webhook_allow_private,
        idempotency_key=idempotency_key,
        max_output_bytes=int(settings.max_output_mb * 1024 * 1024),
    )
    if created:
        dispatcher.submit(PREDICTION_JOB.task, str(job.id))
    response.headers["Location"] = f"/v1/predictions/{job.id}"
    return service.to_read(job)


@router.get("/predictions", responses={401: _PROBLEM, 403: _PROBLEM})
def list_predictions(
    principal: Predictor,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> PredictionPage:
    # Outputs kept in the artifact store are left out of lists (null): GET the job for them.
    rows, cursor = service.list_jobs(session, owner=principal.user, params=params)
    return PredictionPage(data=[service.to_read(j) for j in rows], next_cursor=cursor)


@router.get("/predictions/{id}", responses={401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM})
def get_prediction(
    id: uuid.UUID, principal: Predictor, session: SessionDep, store: StoreDep
) -> PredictionRead:
    """The job; outputs too large for the list (over 64 KiB) are shown here in full."""
    return service.to_read(service.get_job(session, owner=principal.user, job_id=id), store=store)


@router.post(
    "/predictions/{id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**dict.fromkeys((401, 403, 404, 409), _PROBLEM)},
)
def cancel_prediction(id: uuid.UUID, principal: Predictor, session: SessionDep) -> PredictionRead:
    """Cancel a queued or running job; outputs computed after the cancel are dropped."""
    job = service.get_job(session, owner=principal.user, job_id=id)
    return service.to_read(service.cancel_job(session, job=job))


@router.post(
    "/predictions/{id}/feedback",
    responses={**dict.fromkeys((401, 403, 404, 422), _PROBLEM)},
)
def give_feedback(
    id: uuid.UUID, body: FeedbackCreate, principal: Predictor, session: SessionDep
) -> PredictionRead:
    """Send the true label of a prediction's inputs; they join your `feedback:<model>` dataset."""
    job = service.get_job(session, owner=principal.user, job_id=id)
    return service.to_read(feedback.give_feedback(session, job=job, label=body.label))
