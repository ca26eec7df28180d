"""Models: the list (with search), create, delete; a model's page with its versions, aliases
and the upload form; a version's page with its metrics."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from pydantic import ValidationError

from aiaas import events
from aiaas.deps import ClientAddress, EventsDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import AppError
from aiaas.pagination import PageParams
from aiaas.quotas import Quota
from aiaas.quotas.deps import QuotasDep
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.registry.models import Model
from aiaas.registry.schemas import DEFAULT_ALIAS, ModelCreate, VersionSpec
from aiaas.web import views
from aiaas.web.forms import config_json, read_fields
from aiaas.web.pages import (
    Browser,
    FormValues,
    PageRoute,
    Posted,
    PostedRegistry,
    SignedIn,
    invalid_form,
    messages,
    redirect,
    refused,
    render,
)

router = APIRouter(route_class=PageRoute)
FormText = Annotated[str, Form()]
PAGE_SIZE = 50


def _readable(name: str, browser: SignedIn, session: SessionDep) -> Model:
    return registry.readable_model(session, name=name, user=browser.user)


def _writable(name: str, browser: Posted, session: SessionDep) -> Model:
    return registry.writable_model(session, name=name, user=browser.user)


Readable = Annotated[Model, Depends(_readable)]
Writable = Annotated[Model, Depends(_writable)]


def _labels(text: str) -> list[str] | None:
    """Labels typed one a line or separated by commas; none typed: None."""
    found = [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]
    return found or None


@router.get("/models")
def models_page(
    request: Request,
    browser: SignedIn,
    session: SessionDep,
    q: str = "",
    cursor: str | None = None,
) -> Response:
    params = PageParams(limit=PAGE_SIZE, cursor=cursor)
    rows, next_cursor = registry.list_models(
        session, user=browser.user, params=params, name_contains=q.strip() or None
    )
    latest = registry.latest_numbers(session, rows)
    return render(
        request,
        "models.html",
        viewer=browser,
        models=[registry.to_read(m, user=browser.user, latest=latest.get(str(m.id))) for m in rows],
        q=q,
        next_cursor=next_cursor,
    )


@router.get("/models/new")
def new_model_page(request: Request, browser: SignedIn) -> Response:
    return render(request, "model_new.html", viewer=browser, form={})


@router.post("/models/new")
def create_model(
    request: Request,
    browser: PostedRegistry,
    session: SessionDep,
    quotas: QuotasDep,
    address: ClientAddress,
    name: FormText = "",
    task: FormText = "classification",
    description: FormText = "",
    labels: FormText = "",
    visibility: FormText = "private",
) -> Response:
    form = {
        "name": name,
        "task": task,
        "description": description,
        "labels": labels,
        "visibility": visibility,
    }
    try:
        spec = ModelCreate(
            name=name.strip(),
            task=task,
            description=description,
            labels=_labels(labels),
            visibility=visibility,
        )
        quotas.check(session, browser.user, Quota.MODELS)
        model = registry.create_model(session, owner=browser.user, spec=spec, address=address)
    except ValidationError as exc:
        return refused(request, "model_new.html", browser, invalid_form(exc), form=form)
    except AppError as exc:
        return refused(request, "model_new.html", browser, exc, form=form)
    return redirect(request, f"/models/{model.name}", flash=f"Model '{model.name}' created.")


def _model_page(
    request: Request,
    browser: Browser,
    session: SessionDep,
    model: Model,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    rows, _ = versions.list_versions(
        session, model=model, params=PageParams(limit=100, cursor=None)
    )
    aliases = versions.aliases_by_version(model)
    # The playground asks what a predict without a version gets.
    default = versions.default_reference(session, model)
    serving = versions.resolve_version(session, model=model, ref=default) if rows else None
    return render(
        request,
        "model.html",
        viewer=browser,
        status=status,
        model=model,
        owned=model.owner_id == browser.user.id,
        versions=[views.version_row(v, aliases.get(v.number, [])) for v in rows],
        default_alias=DEFAULT_ALIAS,
        architectures=views.architectures(),
        architecture_choices=views.architecture_choices(),
        playground=views.playground(model, serving) if serving is not None else None,
        **context,
    )


@router.get("/models/{name}")
def model_page(
    request: Request, browser: SignedIn, session: SessionDep, model: Readable
) -> Response:
    return _model_page(request, browser, session, model, upload={})


@router.post("/models/{name}/versions")
def upload_version(
    request: Request,
    browser: PostedRegistry,
    session: SessionDep,
    model: Writable,
    quotas: QuotasDep,
    settings: SettingsDep,
    store: StoreDep,
    bus: EventsDep,
    posted: FormValues,
    weights: Annotated[UploadFile, File()],
    architecture: FormText = "",
    config: FormText = "",
    labels: FormText = "",
) -> Response:
    upload = {key: value for key, value in posted.items() if key != "csrf_token"}
    # The JSON text, when typed, is the whole config; else the picked family's fields make it.
    upload["config_source"] = "json" if config.strip() else "fields"
    try:
        raw = config_json(config)
        if raw is None:
            raw = read_fields(views.config_fields().get(architecture, []), posted)
        spec = VersionSpec(architecture=architecture, config=raw, labels=_labels(labels))
        version = versions.upload_version(
            session,
            model=model,
            user=browser.user,
            spec=spec,
            weights=weights.file,
            quotas=quotas,
            store=store,
            max_bytes=int(settings.max_upload_mb * 1024 * 1024),
            max_parameters=settings.max_model_parameters,
        )
    except ValidationError as exc:
        error: AppError = invalid_form(exc)
    except AppError as exc:
        error = exc
    else:
        bus.publish(events.MODEL_CHANGED, model.name)
        return redirect(
            request, f"/models/{model.name}", flash=f"Version {version.number} uploaded."
        )
    session.rollback()
    return _model_page(
        request, browser, session, model, status=error.status, upload=upload, **messages(error)
    )


@router.post("/models/{name}/aliases")
def set_alias(
    request: Request,
    browser: Posted,
    session: SessionDep,
    model: Writable,
    bus: EventsDep,
    alias: FormText = DEFAULT_ALIAS,
    version: FormText = "",
) -> Response:
    row = versions.set_alias(session, model=model, alias=alias.strip(), ref=version.strip())
    bus.publish(events.MODEL_CHANGED, model.name)
    message = f"'{row.alias}' now points at version {row.version.number}."
    return redirect(request, f"/models/{model.name}", flash=message)


@router.get("/models/{name}/delete")
def delete_page(
    request: Request, browser: SignedIn, session: SessionDep, model: Readable
) -> Response:
    registry.writable_model(session, name=model.name, user=browser.user)
    return render(request, "model_delete.html", viewer=browser, model=model)


@router.post("/models/{name}/delete")
def delete_model(
    request: Request,
    browser: Posted,
    session: SessionDep,
    model: Writable,
    store: StoreDep,
    bus: EventsDep,
    address: ClientAddress,
    confirm: FormText = "",
) -> Response:
    if confirm.strip() != model.name:
        return render(
            request,
            "model_delete.html",
            viewer=browser,
            status=422,
            model=model,
            error="Type the model's name to confirm.",
            errors={"confirm": f"type {model.name} to delete it"},
        )
    name = model.name
    registry.delete_model(
        session, model=model, store=store, actor_id=browser.user.id, address=address
    )
    bus.publish(events.MODEL_CHANGED, name)
    return redirect(request, "/models", flash=f"Model '{name}' deleted.")


@router.get("/models/{name}/versions/{ref}")
def version_page(
    request: Request, browser: SignedIn, session: SessionDep, model: Readable, ref: str
) -> Response:
    found = versions.resolve_version(session, model=model, ref=ref)
    aliases = versions.aliases_by_version(model).get(found.number, [])
    return render(
        request,
        "version.html",
        viewer=browser,
        model=model,
        version=views.version_row(found, aliases),
        metrics=views.metrics_table(found),
        details=views.version_details(model, found),
    )
