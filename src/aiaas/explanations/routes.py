"""``POST /v1/models/{name}/explain``: who may call it is who may call predict on the model
(``predictions.sync.PredictPath.caller``, asked by ``service.Explainer``); the route only hands
the request over and shapes the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from aiaas.errors import PROBLEM_CONTENT_TYPE
from aiaas.explanations.schemas import ExplainParams, ExplainRead
from aiaas.explanations.service import Explainer
from aiaas.middleware import RATE_LIMIT_STATE
from aiaas.predictions.routes import VersionRef, inputs_body
from aiaas.predictions.sync import JSON, NPY

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", tags=["explanations"])

_OPTION = "An option, for a .npy body (a JSON body's field of the same name wins)."


@router.post(
    "/models/{name}/explain",
    openapi_extra=inputs_body(
        ExplainParams.model_json_schema()["properties"], method="saliency", target=0
    ),
    response_class=Response,
    responses={
        200: {
            "description": "The attributions and what they explain; the attributions alone "
            "as .npy with `Accept: application/x-npy` (the rest in `Aiaas-*` headers).",
            "content": {JSON: {"schema": ExplainRead.model_json_schema()}, NPY: {}},
        },
        **dict.fromkeys((401, 403, 404, 413, 415, 422, 429, 504), _PROBLEM),
    },
)
async def explain(
    name: str,
    request: Request,
    version: VersionRef = None,
    method: Annotated[str | None, Query(description=_OPTION)] = None,
    target: Annotated[str | None, Query(description=_OPTION)] = None,
    baseline: Annotated[str | None, Query(description=_OPTION)] = None,
    steps: Annotated[str | None, Query(description=_OPTION)] = None,
) -> Response:
    """Which input values moved the model's answer: feature attributions by integrated
    gradients, saliency or occlusion, shaped like the inputs."""
    explainer: Explainer = request.app.state.explainer
    headers = request.headers
    options = {"method": method, "target": target, "baseline": baseline, "steps": steps}
    result = await explainer.explain(
        name=name,
        ref=version,
        authorization=headers.get("authorization"),
        content_type=headers.get("content-type"),
        body=await request.body(),
        query={key: value for key, value in options.items() if value is not None},
        routing_key=headers.get("aiaas-routing-key"),
    )
    setattr(request.state, RATE_LIMIT_STATE, result.rate_limit)
    payload, fields = result.render(headers.get("accept"))
    return Response(payload, headers=fields)
