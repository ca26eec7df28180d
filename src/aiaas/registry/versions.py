"""Model versions: upload checked against the architecture, aliases, resolving a reference.

An upload is refused before anything is stored unless the weights are a well-formed safetensors
file whose tensors match, name for name and shape for shape, the model the config builds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import torch
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.db import utcnow
from aiaas.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, from_core
from aiaas.ml import architectures
from aiaas.ml.errors import ConfigInvalid, NotSafetensors, UnknownArchitecture
from aiaas.ml.weights import check_state_dict, load_safetensors
from aiaas.pagination import PageParams, fetch_page
from aiaas.quotas import Quota, Quotas
from aiaas.registry.models import Model, ModelAlias, ModelVersion
from aiaas.registry.schemas import (
    DEFAULT_ALIAS,
    LATEST,
    CardUpdate,
    VersionSpec,
    VersionUpdate,
    alias_problem,
)
from aiaas.registry.service import release_artifacts
from aiaas.serving.spec import ServingSpec
from aiaas.storage import ArtifactStore


def parse_spec(raw: str) -> VersionSpec:
    try:
        return VersionSpec.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"loc": ["spec", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise InvalidInput("The 'spec' part is not a valid version spec.", errors=errors) from None


def checked_config(
    architecture: str,
    raw: dict[str, Any],
    *,
    max_parameters: int,
    loc: tuple[str, ...],
) -> Any:
    """The parsed config of ``architecture``, or a 422 locating each problem under ``loc``."""
    try:
        return architectures.parse_config(architecture, raw, max_parameters=max_parameters)
    except (UnknownArchitecture, ConfigInvalid) as exc:
        raise from_core(exc, *loc) from None


def check_upload(
    *, model: Model, spec: VersionSpec, weights: bytes, max_parameters: int
) -> tuple[Any, architectures.InputSpec, int, list[str] | None]:
    """Validate spec and weights together; return (config, input spec, parameters, labels)."""
    config = checked_config(
        spec.architecture, spec.config, max_parameters=max_parameters, loc=("spec",)
    )
    labels = spec.labels if spec.labels is not None else model.labels
    output_dim = int(getattr(config, "output_dim", 0))
    if model.task == "classification" and labels is not None and len(labels) != output_dim:
        raise InvalidInput(
            f"{len(labels)} labels for a model with {output_dim} outputs.",
            errors=[
                {
                    "loc": ["spec", "labels"],
                    "msg": f"expected {output_dim} labels, one per output, got {len(labels)}",
                }
            ],
        )

    try:
        tensors = load_safetensors(weights)
    except NotSafetensors as exc:
        raise from_core(exc) from None
    # The meta device gives every parameter's name and shape without allocating its memory.
    with torch.device("meta"):
        module = architectures.build_model(spec.architecture, config)
    problems = check_state_dict(module, tensors)
    if problems:
        raise InvalidInput(
            f"The weights do not fit the {spec.architecture} config: {len(problems)} tensor(s).",
            errors=[dict(p.to_error()) for p in problems],
        )
    spec_in = architectures.input_spec(spec.architecture, config)
    return config, spec_in, architectures.parameter_count(spec.architecture, config), labels


def create_version(
    session: Session,
    *,
    model: Model,
    spec: VersionSpec,
    weights: bytes,
    store: ArtifactStore,
    max_parameters: int,
    metrics: dict[str, Any] | None = None,
    commit: bool = True,
) -> ModelVersion:
    """Check and store a new version. ``commit=False`` leaves the row flushed in the caller's
    transaction (a training commits it together with its own outcome)."""
    config, input_spec, parameters, labels = check_upload(
        model=model, spec=spec, weights=weights, max_parameters=max_parameters
    )
    info = store.put_bytes(weights)
    number = (
        session.scalar(
            select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id)
        )
        or 0
    ) + 1
    version = ModelVersion(
        model_id=model.id,
        number=number,
        architecture=spec.architecture,
        config=config.model_dump(mode="json"),
        input_shape=list(input_spec.shape),
        input_dtype=input_spec.dtype,
        labels=labels,
        parameters=parameters,
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        metrics=metrics,
        created_at=utcnow(),
    )
    session.add(version)
    try:
        if commit:
            session.commit()
        else:
            session.flush()
    except IntegrityError as exc:
        session.rollback()
        release_artifacts(session, store=store, digests={info.sha256})
        raise Conflict("Another version was uploaded at the same moment; try again.") from exc
    if commit:
        ensure_blob(store, info.sha256, weights)
    return version


def upload_version(
    session: Session,
    *,
    model: Model,
    user: User,
    spec: VersionSpec,
    weights: BinaryIO,
    quotas: Quotas,
    store: ArtifactStore,
    max_bytes: int,
    max_parameters: int,
) -> ModelVersion:
    """A version uploaded by ``user``: read at most ``max_bytes`` of ``weights``, check the
    account's quotas, then check and store it (the API's upload and the dashboard's)."""
    data = weights.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"The weights are over the limit of {max_bytes} bytes.")
    quotas.check(session, user, Quota.VERSIONS_PER_MODEL, model_id=model.id, model_name=model.name)
    quotas.check(session, user, Quota.STORED_BYTES, adding=len(data))
    return create_version(
        session, model=model, spec=spec, weights=data, store=store, max_parameters=max_parameters
    )


def ensure_blob(store: ArtifactStore, digest: str, data: bytes) -> None:
    """Store ``data`` again if a concurrent delete removed its blob.

    Bytes already stored are shared: a delete elsewhere removes the blob once no committed
    row refers to it, and that check may run between this upload's ``put_bytes`` (a no-op
    for present bytes) and its row's commit. Called after the commit, this puts the blob
    back; from then on the committed row is the reference every delete sees."""
    if not store.exists(digest):
        store.put_bytes(data)


# Version numbers live in a 32-bit integer column.
MAX_VERSION_NUMBER = 2**31 - 1


def parse_reference(ref: str | int) -> int | str:
    """A version number, 'latest', or an alias slug."""
    if isinstance(ref, int):
        if ref < 1:
            raise InvalidInput(
                "Version numbers start at 1.", errors=[{"loc": ["version"], "msg": "must be ≥ 1"}]
            )
        return ref
    # isdigit() alone also accepts "²" (which int() refuses) and other scripts' digits.
    if ref.isascii() and ref.isdigit():
        return parse_reference(int(ref))
    if ref != LATEST and alias_problem(ref):
        raise InvalidInput(
            f"'{ref}' is neither a version number, 'latest' nor an alias.",
            errors=[{"loc": ["version"], "msg": alias_problem(ref)}],
        )
    return ref


def default_reference(session: Session, model: Model) -> str:
    """What a call that names no version gets: the production alias if set, else the latest."""
    return DEFAULT_ALIAS if session.get(ModelAlias, (model.id, DEFAULT_ALIAS)) else LATEST


def resolve_version(session: Session, *, model: Model, ref: str | int) -> ModelVersion:
    """The version a number, 'latest' or an alias names; 404 when there is none."""
    parsed = parse_reference(ref)
    stmt = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if isinstance(parsed, int):
        # A number past the column's range names no version; binding it would fail (500).
        version = (
            session.scalar(stmt.where(ModelVersion.number == parsed))
            if parsed <= MAX_VERSION_NUMBER
            else None
        )
    elif parsed == LATEST:
        version = session.scalar(stmt.order_by(ModelVersion.number.desc()).limit(1))
    else:
        alias = session.get(ModelAlias, (model.id, parsed))
        version = alias.version if alias else None
    if version is None:
        raise NotFound(f"Model '{model.name}' has no version '{ref}'.")
    return version


def list_versions(
    session: Session, *, model: Model, params: PageParams
) -> tuple[list[ModelVersion], str | None]:
    return fetch_page(
        session,
        select(ModelVersion).where(ModelVersion.model_id == model.id),
        params,
    )


def version_numbers(session: Session, *, model_id: uuid.UUID) -> list[int]:
    """Every version number of the model, lowest first."""
    numbers = session.scalars(
        select(ModelVersion.number)
        .where(ModelVersion.model_id == model_id)
        .order_by(ModelVersion.number)
    )
    return list(numbers)


def update_version(session: Session, *, version: ModelVersion, changes: VersionUpdate) -> None:
    for field, value in changes.model_dump(exclude_unset=True).items():
        setattr(version, field, value)
    session.commit()


def update_card(session: Session, *, version: ModelVersion, changes: CardUpdate) -> None:
    """Set the owner's text on the version's card; a field left out of ``changes`` stays."""
    for field, value in changes.model_dump(exclude_unset=True).items():
        setattr(version, field, value)
    session.commit()


def set_alias(
    session: Session,
    *,
    model: Model,
    alias: str,
    ref: str | int | None = None,
    weights: Mapping[str, int] | None = None,
    shadow: str | int | None = None,
) -> ModelAlias:
    """Point ``alias`` at one version (``ref``) or split it by ``weights`` (refs to integer
    weights summing to 100); ``shadow`` gets a copy of the traffic. References are resolved
    now: the alias names versions, not other aliases."""
    problem = alias_problem(alias)
    if problem:
        raise InvalidInput(
            f"'{alias}' cannot be an alias.", errors=[{"loc": ["path", "alias"], "msg": problem}]
        )
    split: list[tuple[ModelVersion, int]] = []
    if weights is not None:
        for key, weight in weights.items():
            try:
                split.append((resolve_version(session, model=model, ref=key), weight))
            except NotFound as exc:
                raise InvalidInput(
                    exc.detail, errors=[{"loc": ["body", "versions", key], "msg": exc.detail}]
                ) from None
        if len({v.id for v, _ in split}) != len(split):
            raise InvalidInput(
                "The split names one version twice.",
                errors=[{"loc": ["body", "versions"], "msg": "each version once"}],
            )
        # The heaviest share is the primary (the first named, on a tie).
        primary = max(split, key=lambda pair: pair[1])[0]
        for (version, _), key in zip(split, weights, strict=True):
            # A caller cannot know which version answers: one body must fit them all.
            _check_inputs(version, primary, loc=["body", "versions", key], role=f"v{key}")
    else:
        primary = resolve_version(session, model=model, ref=LATEST if ref is None else ref)
    shadow_version = None
    if shadow is not None:
        shadow_version = resolve_version(session, model=model, ref=shadow)
        _check_shadow(shadow_version, primary, [v for v, _ in split])
    row = session.get(ModelAlias, (model.id, alias))
    if row is None:
        row = ModelAlias(model_id=model.id, alias=alias)
        session.add(row)
    row.version_id = primary.id
    row.version = primary
    row.split = [{"version_id": str(v.id), "weight": w} for v, w in split] or None
    row.shadow_version_id = shadow_version.id if shadow_version is not None else None
    row.shadow = shadow_version
    row.updated_at = utcnow()
    session.commit()
    return row


def _check_shadow(
    shadow: ModelVersion, primary: ModelVersion, split: Sequence[ModelVersion]
) -> None:
    if shadow.id == primary.id or any(v.id == shadow.id for v in split):
        msg = "The shadow must be a version the alias does not serve."
        raise InvalidInput(msg, errors=[{"loc": ["body", "shadow"], "msg": msg}])
    # The shadow gets the very batch a served version ran (all of them take the same inputs).
    _check_inputs(shadow, primary, loc=["body", "shadow"], role="The shadow")


def _check_inputs(
    version: ModelVersion, primary: ModelVersion, *, loc: list[str], role: str
) -> None:
    if list(version.input_shape) != list(primary.input_shape):
        msg = (
            f"{role} takes inputs shaped {version.input_shape}, "
            f"the alias's primary version {primary.input_shape}."
        )
        raise InvalidInput(msg, errors=[{"loc": loc, "msg": msg}])


def split_numbers(session: Session, row: ModelAlias) -> dict[str, int] | None:
    """An alias's split as version numbers to weights; None when it has none. (Versions go
    only with their model, which takes its aliases with it: every id names a version.)"""
    if not row.split:
        return None
    ids = [uuid.UUID(share["version_id"]) for share in row.split]
    query = select(ModelVersion.id, ModelVersion.number).where(ModelVersion.id.in_(ids))
    numbers: dict[uuid.UUID, int] = dict(session.execute(query).all())
    return {str(numbers[i]): int(s["weight"]) for i, s in zip(ids, row.split, strict=True)}


def delete_alias(session: Session, *, model: Model, alias: str) -> None:
    # A string that cannot be an alias names none (and may hold a NUL PostgreSQL refuses).
    row = None if alias_problem(alias) else session.get(ModelAlias, (model.id, alias))
    if row is None:
        raise NotFound(f"Model '{model.name}' has no alias '{alias}'.")
    session.delete(row)
    session.commit()


def aliases_by_version(model: Model) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for row in model.aliases:
        found.setdefault(row.version.number, []).append(row.alias)
    return found


def serving_spec(
    model: Model, version: ModelVersion, *, default_max_batch_size: int, default_max_delay_ms: float
) -> ServingSpec:
    """What a worker needs to load and run this version, in plain values."""
    return ServingSpec(
        weights=version.sha256,
        architecture=version.architecture,
        config=version.config,
        task=model.task,  # type: ignore[arg-type]
        labels=tuple(version.labels) if version.labels else None,
        input_shape=tuple(version.input_shape),
        max_batch_size=version.max_batch_size or default_max_batch_size,
        max_delay_ms=(
            version.max_delay_ms if version.max_delay_ms is not None else default_max_delay_ms
        ),
    )


def feedback_classes(
    session: Session, model: Model, version: int | None = None
) -> list[str | int] | None:
    """What a feedback label may be for a prediction of ``model`` made by ``version`` (the
    latest when None): the class names that version answers with (its labels, set when it was
    trained on named classes), else the model's labels, else output indices."""
    if model.task != "classification":
        return None
    query = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if version is not None:
        query = query.where(ModelVersion.number == version)
    row = session.scalar(query.order_by(ModelVersion.number.desc()).limit(1))
    if row is not None and row.labels:
        return list(row.labels)
    if model.labels:
        return list(model.labels)
    outputs = int(row.config.get("output_dim", 0)) if row is not None else 0
    return list(range(outputs))
