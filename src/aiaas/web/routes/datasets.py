"""Datasets: the list (built-ins, feedback sets, uploads), the upload form that shows where a
file is malformed, a dataset's page, and deleting an upload or clearing a feedback set."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Final

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from aiaas.config import Settings
from aiaas.datasets import service as datasets
from aiaas.datasets.models import Dataset
from aiaas.datasets.schemas import DatasetRead
from aiaas.deps import SessionDep, SettingsDep, StoreDep
from aiaas.errors import AppError, Forbidden, InvalidInput
from aiaas.pagination import PageParams
from aiaas.quotas.deps import QuotasDep
from aiaas.web.pages import (
    Browser,
    PageRoute,
    Posted,
    PostedTrain,
    SignedIn,
    redirect,
    refused,
    render,
)

router = APIRouter(route_class=PageRoute)
FormText = Annotated[str, Form()]
PAGE_SIZE = 50
TASKS: Final = ("classification", "regression")
# The API's limits on the same form fields (aiaas.datasets.routes).
MAX_NAME = 128
MAX_LABEL_COLUMN = 256
# A classification set may have hundreds of classes: the list shows the first few.
LISTED_CLASSES = 8
PLACE: Final = re.compile(r"^Line \d+(, column '[^']*')?: ")
FIELD_NAMES: Final = {
    "file": "File",
    "name": "Name",
    "task": "Task",
    "label_column": "Label column",
    "input_shape": "Input shape",
}


def _row(read: DatasetRead, size: int | None) -> dict[str, Any]:
    classes = read.classes or []
    return {
        "id": read.id,
        "name": read.name,
        "task": read.task,
        "source": read.source,
        "rows": read.rows,
        "features": math.prod(read.input_shape) if read.input_shape else 0,
        # A flat row needs no shape beside its feature count; images do.
        "shape": read.input_shape if len(read.input_shape) > 1 else None,
        "classes": [str(c) for c in classes],
        "listed_classes": [str(c) for c in classes[:LISTED_CLASSES]],
        "more_classes": max(0, len(classes) - LISTED_CLASSES),
        "size_bytes": size,
        "created_at": read.created_at,
        "description": read.description,
        "deletable": read.source != "builtin",
        # The family that takes this shape of example, for the page's training example.
        "architecture": {3: "cnn", 2: "rnn"}.get(len(read.input_shape), "mlp"),
    }


def _sizes(session: Session, rows: Sequence[DatasetRead]) -> dict[str, int]:
    """The stored size of the uploads among ``rows`` (the API's schema does not carry it)."""
    ids = [uuid.UUID(r.id) for r in rows if r.source == "upload"]
    if not ids:
        return {}
    found = session.execute(select(Dataset.id, Dataset.size_bytes).where(Dataset.id.in_(ids)))
    return {str(ident): size for ident, size in found}


@router.get("/datasets")
def datasets_page(
    request: Request, browser: SignedIn, session: SessionDep, cursor: str | None = None
) -> Response:
    reads, next_cursor = datasets.list_datasets(
        session, owner=browser.user, params=PageParams(limit=PAGE_SIZE, cursor=cursor)
    )
    sizes = _sizes(session, reads)
    rows = [_row(r, sizes.get(r.id)) for r in reads]
    return render(
        request,
        "datasets.html",
        viewer=browser,
        uploads=[r for r in rows if r["source"] == "upload"],
        feedback=[r for r in rows if r["source"] == "feedback"],
        builtins=[r for r in rows if r["source"] == "builtin"],
        first_page=cursor is None,
        next_cursor=next_cursor,
    )


def _new_page(
    request: Request,
    browser: Browser,
    settings: Settings,
    *,
    form: dict[str, str],
    error: AppError | None = None,
) -> Response:
    context: dict[str, Any] = {
        "form": form,
        "tasks": TASKS,
        "max_mb": f"{settings.max_upload_mb:g}",
    }
    if error is None:
        return render(request, "dataset_new.html", viewer=browser, **context)
    places = [
        {"where": _where(item.get("loc", [])), "msg": _unplaced(str(item.get("msg", "")))}
        for item in error.errors or []
    ]
    return refused(request, "dataset_new.html", browser, error, places=places, **context)


@router.get("/datasets/new")
def new_dataset_page(request: Request, browser: SignedIn, settings: SettingsDep) -> Response:
    form = {"name": "", "task": "classification", "label_column": "label", "input_shape": ""}
    return _new_page(request, browser, settings, form=form)


@router.post("/datasets/new")
def upload_dataset(
    request: Request,
    browser: PostedTrain,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    store: StoreDep,
    file: Annotated[UploadFile | None, File()] = None,
    name: FormText = "",
    task: FormText = "classification",
    label_column: FormText = "label",
    input_shape: FormText = "",
) -> Response:
    form = {"name": name, "task": task, "label_column": label_column, "input_shape": input_shape}
    try:
        upload, shape = _checked(form, file)
        dataset = datasets.upload_dataset(
            session,
            quotas,
            owner=browser.user,
            store=store,
            file=upload.file,
            max_bytes=int(settings.max_upload_mb * 1024 * 1024),
            filename=upload.filename,
            content_type=upload.content_type,
            name=name.strip(),
            task="regression" if task == "regression" else "classification",
            label_column=label_column.strip(),
            input_shape=shape,
        )
    except AppError as exc:
        session.rollback()
        return _new_page(request, browser, settings, form=form, error=exc)
    return redirect(
        request,
        f"/datasets/{dataset.id}",
        flash=f"Dataset '{dataset.name}' uploaded: {dataset.rows:,} rows.",
    )


def _checked(form: dict[str, str], file: UploadFile | None) -> tuple[UploadFile, list[int] | None]:
    """The file and the input shape typed, once every field is valid; otherwise every
    field's problem at once, so that one round trip fixes them all."""
    problems: list[dict[str, Any]] = []

    def refuse(field: str, msg: str) -> None:
        problems.append({"loc": [field], "msg": msg})

    name, label_column = form["name"].strip(), form["label_column"].strip()
    if not name:
        refuse("name", "give the dataset a name")
    elif len(name) > MAX_NAME:
        refuse("name", f"at most {MAX_NAME} characters")
    if form["task"] not in TASKS:
        refuse("task", "classification or regression")
    if not label_column:
        refuse("label_column", "name the column that holds the labels")
    elif len(label_column) > MAX_LABEL_COLUMN:
        refuse("label_column", f"at most {MAX_LABEL_COLUMN} characters")
    shape = None
    try:
        shape = _shape(form["input_shape"])
    except ValueError:
        refuse("input_shape", "whole numbers separated by commas, such as 1, 8, 8")
    # A browser sends a file field left empty as a part without a name or bytes.
    if file is None or not file.filename:
        refuse("file", "no file was chosen: pick a CSV or NPZ file")
    if problems or file is None:
        fields = ", ".join(dict.fromkeys(FIELD_NAMES[str(p["loc"][0])] for p in problems))
        raise InvalidInput(f"Please check: {fields}.", errors=problems)
    return file, shape


def _shape(text: str) -> list[int] | None:
    """``1, 8, 8``, ``1x8x8`` or ``[1, 8, 8]`` as a list; empty: None. Whether the numbers
    fit the file is the parser's to say."""
    stripped = text.strip().strip("[]()").strip()
    if not stripped:
        return None
    parts = [p for p in re.split(r"[,x\u00d7\s]+", stripped) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return [int(p) for p in parts]


def _unplaced(msg: str) -> str:
    # The parser's messages start with their place, which the table shows beside them.
    rest = PLACE.sub("", msg, count=1)
    return rest[:1].upper() + rest[1:]


def _where(loc: Sequence[Any]) -> str:
    """A problem's place as a person reads it: a CSV line and column, an NPZ array and row,
    or the form field."""
    parts = list(loc)
    if not parts:
        return "the upload"
    if parts[0] != "file":
        return FIELD_NAMES.get(str(parts[-1]), str(parts[-1]))
    rest = parts[1:]
    if not rest:
        return "the file"
    if isinstance(rest[0], int):
        where = f"line {rest[0]}"
        return where + (f", column {rest[1]}" if len(rest) > 1 else "")
    where = f"array {rest[0]}"
    return where + (f", row {rest[1]}" if len(rest) > 1 else "")


@router.get("/datasets/{dataset_id}")
def dataset_page(
    request: Request, browser: SignedIn, session: SessionDep, dataset_id: str
) -> Response:
    read = datasets.describe(session, owner=browser.user, dataset_id=dataset_id)
    return render(
        request,
        "dataset.html",
        viewer=browser,
        dataset=_row(read, _sizes(session, [read]).get(read.id)),
    )


@router.get("/datasets/{dataset_id}/delete")
def delete_page(
    request: Request, browser: SignedIn, session: SessionDep, dataset_id: str
) -> Response:
    read = datasets.describe(session, owner=browser.user, dataset_id=dataset_id)
    if read.source == "builtin":
        raise Forbidden("Built-in datasets cannot be deleted.")
    return render(request, "dataset_delete.html", viewer=browser, dataset=_row(read, None))


@router.post("/datasets/{dataset_id}/delete")
def delete_dataset(
    request: Request, browser: Posted, session: SessionDep, store: StoreDep, dataset_id: str
) -> Response:
    read = datasets.describe(session, owner=browser.user, dataset_id=dataset_id)
    datasets.delete_dataset(session, owner=browser.user, store=store, dataset_id=dataset_id)
    if read.source == "feedback":
        message = f"{read.name} is cleared: those predictions no longer carry labels."
    else:
        message = f"Dataset '{read.name}' deleted."
    return redirect(request, "/datasets", flash=message)
