"""The playground's requests, by the signed-in account, for the model page's script (which
sends the session's CSRF token in ``X-CSRF-Token``): a prediction, and an explanation of one.
Both take the bodies the API takes (JSON, or a ``.npy`` array) and answer as it does, in JSON."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request, Response

from aiaas.deps import RateLimitsDep
from aiaas.errors import AppError, problem_response
from aiaas.explanations.service import Explainer
from aiaas.predictions.sync import JSON, PredictPath
from aiaas.ratelimits import RouteClass
from aiaas.web.pages import PageRoute, Posted, limit_browser

router = APIRouter(route_class=PageRoute)


@router.post("/models/{name}/playground")
async def predict(request: Request, name: str, browser: Posted, limits: RateLimitsDep) -> Response:
    path: PredictPath = request.app.state.predict_path
    body = await request.body()
    decode = functools.partial(path.decode, body, request.headers.get("content-type"))
    try:
        # Limited as /v1 predict is: the playground must not be a way round the account's limit.
        rate_limit = limit_browser(limits, browser, RouteClass.PREDICT)
        result = await path.serve_as(
            browser.user.id, name=name, ref=None, decode=decode, rate_limit=rate_limit
        )
    except AppError as exc:
        # The page's script shows the problem's detail beside the form.
        return problem_response(exc, request.url.path)
    content, headers = result.render(JSON)
    return Response(content, headers=headers)


@router.post("/models/{name}/playground/explain")
async def explain(request: Request, name: str, browser: Posted, limits: RateLimitsDep) -> Response:
    """Options as the API takes them: a JSON body's fields, or query parameters with .npy."""
    explainer: Explainer = request.app.state.explainer
    try:
        rate_limit = limit_browser(limits, browser, RouteClass.PREDICT)
        result = await explainer.explain_as(
            browser.user.id,
            name=name,
            ref=None,
            content_type=request.headers.get("content-type"),
            body=await request.body(),
            query=dict(request.query_params),
            rate_limit=rate_limit,
        )
    except AppError as exc:
        return problem_response(exc, request.url.path)
    content, headers = result.render(JSON)
    return Response(content, headers=headers)
