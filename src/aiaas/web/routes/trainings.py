"""Trainings: past and running ones, the form that starts one, and a training's page that
follows it live (progress, ETA, loss curves) and can cancel it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request, Response
from pydantic import ValidationError

from aiaas.datasets import service as datasets
from aiaas.deps import DatabaseDep, DispatcherDep, MetricsDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import AppError
from aiaas.ml.architectures import ARCHITECTURES
from aiaas.pagination import PageParams
from aiaas.quotas.deps import QuotasDep
from aiaas.trainings import service, tasks
from aiaas.trainings.models import FINISHED
from aiaas.trainings.schemas import HyperparametersIn, TrainingCreate
from aiaas.trainings.streaming import event_stream
from aiaas.web.forms import config_json, read_fields, schema_fields
from aiaas.web.pages import (
    Browser,
    FormValues,
    PageRoute,
    Posted,
    PostedTrain,
    SignedIn,
    invalid_form,
    redirect,
    refused,
    render,
)

router = APIRouter(route_class=PageRoute)
FormText = Annotated[str, Form()]
PAGE_SIZE = 50
HYPERPARAMETERS = schema_fields(HyperparametersIn.model_json_schema(), prefix="hp.")


@router.get("/trainings")
def trainings_page(
    request: Request, browser: SignedIn, session: SessionDep, cursor: str | None = None
) -> Response:
    rows, next_cursor = service.list_trainings(
        session, owner=browser.user, params=PageParams(limit=PAGE_SIZE, cursor=cursor)
    )
    return render(
        request,
        "trainings.html",
        viewer=browser,
        trainings=[service.to_read(t) for t in rows],
        next_cursor=next_cursor,
    )


def _form_page(
    request: Request,
    browser: Browser,
    session: SessionDep,
    form: dict[str, Any],
    error: AppError | None = None,
) -> Response:
    found, _ = datasets.list_datasets(
        session, owner=browser.user, params=PageParams(limit=100, cursor=None)
    )
    context: dict[str, Any] = {
        "form": form,
        "dataset_choices": [(d.id, f"{d.name} ({d.task}, {d.rows:,} rows)") for d in found],
        "architectures": list(ARCHITECTURES),
        "hyperparameters": HYPERPARAMETERS,
    }
    if error is not None:
        return refused(request, "training_new.html", browser, error, **context)
    return render(request, "training_new.html", viewer=browser, **context)


@router.get("/trainings/new")
def new_training_page(
    request: Request,
    browser: SignedIn,
    session: SessionDep,
    model: str = "",
    dataset: str = "",
    base_version: str = "",
) -> Response:
    # A model page's "fine-tune" link fills in the model and its version.
    form = {
        "model": model,
        "dataset": dataset,
        "start": "finetune" if base_version else "scratch",
        "base_version": base_version,
    }
    return _form_page(request, browser, session, form)


def _base_version(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text


@router.post("/trainings/new")
def start_training(
    request: Request,
    browser: PostedTrain,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    form: FormValues,
) -> Response:
    start = form.get("start", "scratch")
    try:
        spec = TrainingCreate(
            model=form.get("model", "").strip(),
            dataset=form.get("dataset", ""),
            architecture=form.get("architecture") if start == "scratch" else None,
            base_version=_base_version(form.get("base_version", ""))
            if start == "finetune"
            else None,
            config=config_json(form.get("config", "")) if start == "scratch" else None,
            hyperparameters=HyperparametersIn.model_validate(read_fields(HYPERPARAMETERS, form)),
        )
        training = tasks.start_training(
            session,
            quotas,
            dispatcher,
            owner=browser.user,
            spec=spec,
            max_parameters=settings.max_model_parameters,
        )
    except ValidationError as exc:
        return _form_page(request, browser, session, form, invalid_form(exc))
    except AppError as exc:
        return _form_page(request, browser, session, form, exc)
    return redirect(request, f"/trainings/{training.id}", flash="Training queued.")


@router.get("/trainings/{id}")
def training_page(
    request: Request, id: uuid.UUID, browser: SignedIn, session: SessionDep
) -> Response:
    training = service.get_training(session, owner=browser.user, training_id=id)
    return render(
        request,
        "training.html",
        viewer=browser,
        training=service.to_read(training),
        finished=training.status in FINISHED,
    )


@router.get("/trainings/{id}/events")
def training_events(
    request: Request,
    id: uuid.UUID,
    browser: SignedIn,
    session: SessionDep,
    database: DatabaseDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The page's live feed: read-only, so the session cookie alone may open it."""
    service.get_training(session, owner=browser.user, training_id=id)
    session.close()
    return event_stream(request, database, id, last_event_id)


@router.post("/trainings/{id}/cancel")
def cancel_training(
    request: Request,
    id: uuid.UUID,
    browser: Posted,
    session: SessionDep,
    database: DatabaseDep,
    store: StoreDep,
    metrics: MetricsDep,
) -> Response:
    service.cancel_owned(session, database, store, metrics, owner=browser.user, training_id=id)
    return redirect(request, f"/trainings/{id}", flash="Training canceled.")
