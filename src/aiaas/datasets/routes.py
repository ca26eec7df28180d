from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Form, Response, UploadFile, status

from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.datasets import service
from aiaas.datasets.schemas import DatasetPage, DatasetRead
from aiaas.deps import SessionDep, SettingsDep, StoreDep
from aiaas.errors import PROBLEM_CONTENT_TYPE, InvalidInput
from aiaas.ml.task import Task
from aiaas.pagination import PageParams, page_params
from aiaas.quotas.deps import QuotasDep

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}

router = APIRouter(prefix="/v1", tags=["datasets"])

Trainer = Annotated[Principal, Depends(require_scope(Scope.TRAIN))]


def _input_shape(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(d, int) and not isinstance(d, bool) for d in value)
    ):
        raise InvalidInput(
            "input_shape must be a JSON list of positive integers, such as [1, 8, 8].",
            errors=[{"loc": ["body", "input_shape"], "msg": "expected a list of integers"}],
        )
    return value


@router.post(
    "/datasets",
    status_code=status.HTTP_201_CREATED,
    responses={**dict.fromkeys((401, 403, 413, 415, 422), _PROBLEM)},
)
def upload_dataset(
    principal: Trainer,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    store: StoreDep,
    file: Annotated[UploadFile, File(description="CSV (numeric columns and a label) or NPZ.")],
    name: Annotated[str, Form(min_length=1, max_length=128)],
    task: Annotated[Task, Form()],
    label_column: Annotated[str, Form(min_length=1, max_length=256)] = "label",
    input_shape: Annotated[
        str | None, Form(description="JSON list to reshape each flat row, e.g. [1,8,8].")
    ] = None,
) -> DatasetRead:
    """Upload a dataset; it is checked whole (every row and column) before anything is kept."""
    dataset = service.upload_dataset(
        session,
        quotas,
        owner=principal.user,
        store=store,
        file=file.file,
        max_bytes=int(settings.max_upload_mb * 1024 * 1024),
        filename=file.filename,
        content_type=file.content_type,
        name=name,
        task=task,
        label_column=label_column,
        input_shape=_input_shape(input_shape),
    )
    return service.describe(session, owner=principal.user, dataset_id=str(dataset.id))


@router.get("/datasets", responses={401: _PROBLEM, 403: _PROBLEM})
def list_datasets(
    principal: Trainer,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> DatasetPage:
    """Built-ins, your feedback sets and your uploads."""
    rows, cursor = service.list_datasets(session, owner=principal.user, params=params)
    return DatasetPage(data=rows, next_cursor=cursor)


@router.get("/datasets/{id}", responses={**dict.fromkeys((401, 403, 404), _PROBLEM)})
def get_dataset(id: str, principal: Trainer, session: SessionDep) -> DatasetRead:
    return service.describe(session, owner=principal.user, dataset_id=id)


@router.delete(
    "/datasets/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**dict.fromkeys((401, 403, 404), _PROBLEM)},
)
def delete_dataset(id: str, principal: Trainer, session: SessionDep, store: StoreDep) -> Response:
    """Delete an upload, or clear your feedback on a model (`feedback:<model>`)."""
    service.delete_dataset(session, owner=principal.user, store=store, dataset_id=id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
