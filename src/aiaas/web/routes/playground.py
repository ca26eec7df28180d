"""The playground's one request: a prediction by the signed-in account, as JSON, for the
model page's script (which sends the session's CSRF token in ``X-CSRF-Token``)."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request, Response

from aiaas.errors import AppError, problem_response
from aiaas.predictions.sync import JSON, PredictPath
from aiaas.web.pages import PageRoute, Posted

router = APIRouter(route_class=PageRoute)


@router.post("/models/{name}/playground")
async def predict(request: Request, name: str, browser: Posted) -> Response:
    path: PredictPath = request.app.state.predict_path
    body = await request.body()
    decode = functools.partial(path.decode, body, JSON)
    try:
        result = await path.serve_as(browser.user.id, name=name, ref=None, decode=decode)
    except AppError as exc:
        # The page's script shows the problem's detail beside the form.
        return problem_response(exc, request.url.path)
    content, headers = result.render(JSON)
    return Response(content, headers=headers)
