from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Response,
    UploadFile,
    status,
)
from fastapi.responses import StreamingResponse

from aiaas import events
from aiaas.accounts.deps import require_scope
from aiaas.accounts.schemas import Scope
from aiaas.accounts.service import Principal
from aiaas.deps import ClientAddress, EventsDep, SessionDep, SettingsDep, StoreDep
from aiaas.errors import PROBLEM_CONTENT_TYPE, Forbidden
from aiaas.ml.architectures import ARCHITECTURES
from aiaas.pagination import PageParams, page_params
from aiaas.quotas import Quota
from aiaas.quotas.deps import QuotasDep
from aiaas.registry import cards, service, versions
from aiaas.registry.deps import ReadableModel, WritableModel
from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.registry.schemas import (
    AliasRead,
    AliasSet,
    ArchitectureList,
    ArchitectureRead,
    CardRead,
    CardUpdate,
    InputRead,
    ModelCreate,
    ModelPage,
    ModelRead,
    ModelUpdate,
    VersionPage,
    VersionRead,
    VersionUpdate,
)

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_CONTENT_TYPE: {}}}
_ERRORS: dict[int | str, dict[str, Any]] = dict.fromkeys((401, 403, 404, 422), _PROBLEM)

router = APIRouter(prefix="/v1", tags=["registry"], responses=_ERRORS)

Reader = Annotated[Principal, Depends(require_scope(Scope.MODELS_READ))]
Writer = Annotated[Principal, Depends(require_scope(Scope.MODELS_WRITE))]
VersionRef = Annotated[str, Path(description="A version number, an alias, or 'latest'.")]


@router.get("/architectures", tags=["registry"])
def list_architectures() -> ArchitectureList:
    """The model families the platform builds, each with its config's JSON Schema. Public."""
    data = []
    for arch in ARCHITECTURES.values():
        example = arch.config_model.model_validate(arch.example_config)
        data.append(
            ArchitectureRead(
                name=arch.name,
                description=arch.description,
                config_schema=arch.config_schema(),
                example_config=arch.example_config,
                input=InputRead(shape=list(arch.input_spec(example).shape)),
            )
        )
    return ArchitectureList(data=data)


def _model_read(session: SessionDep, model: Model, principal: Principal) -> ModelRead:
    latest = service.latest_numbers(session, [model]).get(str(model.id))
    return service.to_read(model, user=principal.user, latest=latest)


@router.post("/models", status_code=status.HTTP_201_CREATED, responses={409: _PROBLEM})
def create_model(
    body: ModelCreate,
    principal: Writer,
    session: SessionDep,
    quotas: QuotasDep,
    address: ClientAddress,
) -> ModelRead:
    quotas.check(session, principal.user, Quota.MODELS)
    model = service.create_model(session, owner=principal.user, spec=body, address=address)
    return service.to_read(model, user=principal.user, latest=None)


@router.get("/models")
def list_models(
    principal: Reader,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> ModelPage:
    """The caller's models and every public one, newest first."""
    rows, cursor = service.list_models(session, user=principal.user, params=params)
    latest = service.latest_numbers(session, rows)
    return ModelPage(
        data=[service.to_read(m, user=principal.user, latest=latest.get(str(m.id))) for m in rows],
        next_cursor=cursor,
    )


@router.get("/models/{name}")
def get_model(model: ReadableModel, principal: Reader, session: SessionDep) -> ModelRead:
    return _model_read(session, model, principal)


@router.patch("/models/{name}")
def update_model(
    body: ModelUpdate,
    model: WritableModel,
    principal: Writer,
    session: SessionDep,
    bus: EventsDep,
    address: ClientAddress,
) -> ModelRead:
    service.update_model(
        session, model=model, changes=body, actor_id=principal.user.id, address=address
    )
    bus.publish(events.MODEL_CHANGED, model.name)
    return _model_read(session, model, principal)


@router.delete("/models/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(
    model: WritableModel,
    principal: Writer,
    session: SessionDep,
    store: StoreDep,
    bus: EventsDep,
    address: ClientAddress,
) -> Response:
    """Delete the model, its versions and aliases, and every artifact nothing else uses."""
    name = model.name
    service.delete_model(
        session, model=model, store=store, actor_id=principal.user.id, address=address
    )
    bus.publish(events.MODEL_CHANGED, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _version_read(version: ModelVersion, aliases: list[str]) -> VersionRead:
    return VersionRead(
        version=version.number,
        architecture=version.architecture,
        config=version.config,
        input=InputRead(shape=version.input_shape, dtype="float32"),
        labels=version.labels,
        parameters=version.parameters,
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        created_at=version.created_at,
        metrics=version.metrics,
        aliases=sorted(aliases),
        max_batch_size=version.max_batch_size,
        max_delay_ms=version.max_delay_ms,
    )


@router.post(
    "/models/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    responses={413: _PROBLEM},
    openapi_extra={
        "description": "Multipart: a `spec` JSON part and a `weights` safetensors file."
    },
)
def create_version(
    spec: Annotated[str, Form(description='{"architecture", "config", "labels"?} as JSON.')],
    weights: Annotated[UploadFile, File(description="The state dict in safetensors format.")],
    model: WritableModel,
    principal: Writer,
    session: SessionDep,
    quotas: QuotasDep,
    settings: SettingsDep,
    store: StoreDep,
    bus: EventsDep,
) -> VersionRead:
    version = versions.upload_version(
        session,
        model=model,
        user=principal.user,
        spec=versions.parse_spec(spec),
        weights=weights.file,
        quotas=quotas,
        store=store,
        max_bytes=int(settings.max_upload_mb * 1024 * 1024),
        max_parameters=settings.max_model_parameters,
    )
    bus.publish(events.MODEL_CHANGED, model.name)
    return _version_read(version, [])


@router.get("/models/{name}/versions")
def list_versions(
    model: ReadableModel,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> VersionPage:
    rows, cursor = versions.list_versions(session, model=model, params=params)
    aliases = versions.aliases_by_version(model)
    return VersionPage(
        data=[_version_read(v, aliases.get(v.number, [])) for v in rows], next_cursor=cursor
    )


@router.get("/models/{name}/versions/{version}")
def get_version(model: ReadableModel, version: VersionRef, session: SessionDep) -> VersionRead:
    found = versions.resolve_version(session, model=model, ref=version)
    return _version_read(found, versions.aliases_by_version(model).get(found.number, []))


@router.patch("/models/{name}/versions/{version}")
def update_version(
    body: VersionUpdate,
    model: WritableModel,
    version: VersionRef,
    session: SessionDep,
    bus: EventsDep,
) -> VersionRead:
    """Set the version's batching knobs (`max_batch_size`, `max_delay_ms`)."""
    found = versions.resolve_version(session, model=model, ref=version)
    versions.update_version(session, version=found, changes=body)
    bus.publish(events.MODEL_CHANGED, model.name)
    return _version_read(found, versions.aliases_by_version(model).get(found.number, []))


CardFormat = Annotated[
    Literal["json", "markdown"] | None,
    Query(alias="format", description="`markdown` or `json`; wins over the Accept header."),
]
_CARD_FORMS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, cards.MARKDOWN: {}}},
}


def _card(model: Model, version: ModelVersion, principal: Principal) -> dict[str, Any]:
    owned = model.owner_id == principal.user.id
    return cards.build_card(
        cards.CardFacts(
            model=model.name,
            task=model.task,
            version=version.number,
            aliases=versions.aliases_by_version(model).get(version.number, []),
            architecture=version.architecture,
            config=version.config,
            parameters=version.parameters,
            labels=version.labels,
            input_shape=version.input_shape,
            input_dtype=version.input_dtype,
            metrics=version.metrics,
            provenance=version.provenance,
            created_at=version.created_at,
            owned=owned,
            owner_email=principal.user.email if owned else None,
            intended_use=version.intended_use,
            limitations=version.limitations,
        )
    )


@router.get(
    "/models/{name}/versions/{version}/card", response_model=CardRead, responses=_CARD_FORMS
)
def get_card(
    model: ReadableModel,
    version: VersionRef,
    principal: Reader,
    session: SessionDep,
    response: Response,
    accept: Annotated[str | None, Header(description="`text/markdown` for Markdown.")] = None,
    format_: CardFormat = None,
) -> CardRead | Response:
    """The version's model card: architecture, input, training data and hyperparameters,
    held-out metrics, and its owner's intended use and limitations. JSON, or Markdown with
    `Accept: text/markdown` or `?format=markdown` (user text escaped)."""
    found = versions.resolve_version(session, model=model, ref=version)
    card = _card(model, found, principal)
    # The same URL answers two forms: a cache must key on the header that picks one.
    if cards.wants_markdown(accept, format_):
        return Response(
            cards.render_markdown(card),
            media_type=f"{cards.MARKDOWN}; charset=utf-8",
            headers={"Vary": "Accept"},
        )
    response.headers["Vary"] = "Accept"
    return CardRead.model_validate(card)


@router.patch("/models/{name}/versions/{version}/card")
def update_card(
    body: CardUpdate,
    model: WritableModel,
    version: VersionRef,
    principal: Writer,
    session: SessionDep,
) -> CardRead:
    """Set the card's `intended_use` and `limitations` (owner only; null clears one)."""
    found = versions.resolve_version(session, model=model, ref=version)
    versions.update_card(session, version=found, changes=body)
    return CardRead.model_validate(_card(model, found, principal))


@router.get(
    "/models/{name}/versions/{version}/weights",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_weights(
    model: ReadableModel,
    version: VersionRef,
    principal: Reader,
    session: SessionDep,
    store: StoreDep,
) -> StreamingResponse:
    """The version's safetensors file, byte for byte as uploaded. Owner only."""
    if model.owner_id != principal.user.id:
        raise Forbidden(f"Only the owner of '{model.name}' can download its weights.")
    found = versions.resolve_version(session, model=model, ref=version)

    def chunks() -> Iterator[bytes]:
        with store.open(found.sha256) as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    filename = f"{model.name}-v{found.number}.safetensors"
    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Length": str(found.size_bytes),
            "ETag": f'"{found.sha256}"',
        },
    )


def _alias_read(session: SessionDep, row: ModelAlias) -> AliasRead:
    return AliasRead(
        alias=row.alias,
        version=row.version.number,
        versions=versions.split_numbers(session, row),
        shadow=row.shadow.number if row.shadow is not None else None,
        updated_at=row.updated_at,
    )


@router.put("/models/{name}/aliases/{alias}")
def set_alias(
    alias: str, body: AliasSet, model: WritableModel, session: SessionDep, bus: EventsDep
) -> AliasRead:
    """Point ALIAS (production, staging, any slug) at a version, or split it between versions
    by weight (`{"versions": {"3": 90, "4": 10}}`), optionally with a `shadow` version."""
    row = versions.set_alias(
        session,
        model=model,
        alias=alias,
        ref=body.version,
        weights=body.versions,
        shadow=body.shadow,
    )
    bus.publish(events.MODEL_CHANGED, model.name)
    return _alias_read(session, row)


@router.get("/models/{name}/aliases")
def list_aliases(model: ReadableModel, session: SessionDep) -> dict[str, list[AliasRead]]:
    return {"data": [_alias_read(session, a) for a in model.aliases]}


@router.delete("/models/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(alias: str, model: WritableModel, session: SessionDep, bus: EventsDep) -> Response:
    versions.delete_alias(session, model=model, alias=alias)
    bus.publish(events.MODEL_CHANGED, model.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
