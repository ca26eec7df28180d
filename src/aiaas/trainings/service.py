"""Training jobs at the gateway: check everything that can be checked before queueing (the
datasets exist and agree, the architecture fits their shape, the hyperparameters are in range),
then write the row and hand its id to a worker; read, list, cancel, and the events it wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.datasets import service as datasets
from aiaas.datasets.schemas import DatasetRead
from aiaas.db import Database, get_owned, utcnow
from aiaas.errors import Conflict, InvalidInput, NotFound, from_core
from aiaas.metrics import Metrics
from aiaas.ml import architectures, defaults
from aiaas.ml.errors import ShapeMismatch, UnknownArchitecture
from aiaas.pagination import PageParams, fetch_page
from aiaas.quotas import Quota, Quotas
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.registry.models import Model
from aiaas.registry.schemas import ModelCreate
from aiaas.storage import ArtifactStore
from aiaas.trainings.models import (
    CANCELED,
    FINISHED,
    QUEUED,
    RUNNING,
    Training,
    TrainingEvent,
)
from aiaas.trainings.schemas import TrainingCreate, TrainingRead

END = "end"
EPOCH = "epoch"


def _dataset_problem(index: int | None, msg: str) -> InvalidInput:
    loc: list[str | int] = ["body", "dataset"] if index is None else ["body", "dataset", index]
    return InvalidInput(msg, errors=[{"loc": loc, "msg": msg}])


def same_label(a: object, b: object) -> bool:
    """Labels compare as text: an upload's integer 3 and a model's label "3" are one class."""
    return str(a) == str(b)


def check_datasets(reads: Sequence[DatasetRead], *, many: bool) -> None:
    first = reads[0]
    for i, read in enumerate(reads[1:], start=1):
        where = i if many else None
        if read.task != first.task:
            raise _dataset_problem(where, f"'{read.id}' is {read.task}, '{first.id}' {first.task}.")
        if read.input_shape != first.input_shape:
            raise _dataset_problem(
                where,
                f"'{read.id}' has examples of shape {read.input_shape}, "
                f"'{first.id}' of {first.input_shape}.",
            )


def target_classes(
    reads: Sequence[DatasetRead], *, labels: Sequence[Any] | None, many: bool
) -> list[Any] | None:
    """The classes outputs stand for: the model's labels when it has them, else the first
    dataset's; every dataset's classes must be among them."""
    first = reads[0]
    if first.task != "classification":
        return None
    target = list(labels) if labels else list(first.classes or [])
    for i, read in enumerate(reads):
        stray = [c for c in read.classes or [] if not any(same_label(c, t) for t in target)]
        if stray:
            shown = ", ".join(str(c) for c in stray[:5])
            raise _dataset_problem(
                i if many else None,
                f"'{read.id}' has classes the model does not know: {shown}.",
            )
    return target


def version_labels(classes: Sequence[Any] | None) -> list[str] | None:
    """Labels for the version: none when the classes are just 0..n-1 (predictions are indices)."""
    if classes is None or list(classes) == list(range(len(classes))):
        return None
    return [str(c) for c in classes]


def _shape_fits(expected: Sequence[int | None], got: Sequence[int]) -> bool:
    if len(expected) != len(got):
        return False
    return all(e is None or e == g for e, g in zip(expected, got, strict=True))


def _existing_model(
    session: Session, *, owner: User, name: str, first: DatasetRead
) -> Model | None:
    """The caller's model of that name (403 if someone else's, readable), or None."""
    try:
        model = registry.writable_model(session, name=name, user=owner)
    except NotFound:
        return None
    if model.task != first.task:
        raise _dataset_problem(None, f"'{first.id}' is {first.task}; '{name}' is {model.task}.")
    return model


def _new_model(
    *, owner: User, name: str, first: DatasetRead, visibility: str, description: str | None
) -> Model:
    """A model for the training to fill, made from the first dataset (not yet added)."""
    try:
        spec = ModelCreate(
            name=name,
            task=first.task,
            labels=version_labels(first.classes),
            description=description or f"Trained on {first.id}.",
            visibility=visibility,
        )
    except ValueError:
        raise InvalidInput(
            f"'{name}' is not a valid model name.",
            errors=[{"loc": ["body", "model"], "msg": "lowercase slug, 2-63 characters"}],
        ) from None
    now = utcnow()
    return Model(owner_id=owner.id, created_at=now, updated_at=now, **spec.model_dump())


def _from_scratch(
    spec: TrainingCreate, *, shape: tuple[int, ...], outputs: int, max_parameters: int
) -> tuple[dict[str, Any], list[int | None]]:
    """The config to train (filled in from the data) and the input shape it takes."""
    assert spec.architecture is not None
    architecture = spec.architecture
    try:
        architectures.get_architecture(architecture)
    except UnknownArchitecture as exc:
        raise from_core(exc, "body") from None
    given = (spec.config or {}).get("output_dim", outputs)
    if given != outputs:
        raise InvalidInput(
            f"The config has {given} outputs; the data has {outputs}.",
            errors=[{"loc": ["body", "config", "output_dim"], "msg": f"expected {outputs}"}],
        )
    try:
        raw = spec.config or defaults.default_config(architecture, shape, outputs)
        filled = defaults.fit_config(architecture, raw, shape, outputs)
    except ShapeMismatch as exc:
        if spec.config is None:
            raise _dataset_problem(None, exc.msg) from None
        raise from_core(exc, "body", "config") from None
    parsed = versions.checked_config(
        architecture, filled, max_parameters=max_parameters, loc=("body", "config")
    )
    return parsed.model_dump(mode="json"), list(
        architectures.input_spec(architecture, parsed).shape
    )


def create_training(
    session: Session,
    *,
    owner: User,
    spec: TrainingCreate,
    max_parameters: int,
    visibility: str = "private",
    description: str | None = None,
) -> Training:
    """Check everything, then commit the training (and its model, when it is new) at once:
    a refused request leaves nothing behind. ``visibility`` and ``description`` apply to a
    model made here."""
    ids = spec.dataset_ids
    many = not isinstance(spec.dataset, str)
    reads = [datasets.describe(session, owner=owner, dataset_id=i) for i in ids]
    for i, read in enumerate(reads):
        if read.rows == 0:
            raise _dataset_problem(i if many else None, f"'{read.id}' has no rows.")
    check_datasets(reads, many=many)
    first = reads[0]
    rows = sum(r.rows for r in reads)
    if rows < 2:
        raise _dataset_problem(None, "There are fewer than 2 rows to train on.")
    model = _existing_model(session, owner=owner, name=spec.model, first=first)
    model_labels = model.labels if model is not None else None
    shape = tuple(first.input_shape)

    base_number: int | None = None
    if spec.base_version is not None:
        if model is None:
            raise NotFound(f"No model named '{spec.model}' to fine-tune.")
        base = versions.resolve_version(session, model=model, ref=spec.base_version)
        base_number = base.number
        architecture, config = base.architecture, dict(base.config)
        labels: Sequence[Any] | None = base.labels or model_labels
        if first.task == "classification" and not labels:
            labels = list(range(int(config.get("output_dim", 0))))
        classes = target_classes(reads, labels=labels, many=many)
        expected = base.input_shape
    else:
        assert spec.architecture is not None
        architecture = spec.architecture
        classes = target_classes(reads, labels=model_labels, many=many)
        outputs = len(classes) if classes is not None else 1
        config, expected = _from_scratch(
            spec, shape=shape, outputs=outputs, max_parameters=max_parameters
        )
    if not _shape_fits(expected, shape):
        raise _dataset_problem(
            None,
            f"The data's examples have shape {list(shape)}; the {architecture} takes "
            f"{[d if d is not None else 'any' for d in expected]}.",
        )

    hp = spec.hyperparameters.model_dump()
    chosen = defaults.recommended_hyperparameters(architecture, rows)
    for key in ("epochs", "batch_size", "learning_rate"):
        if hp[key] is None:
            hp[key] = chosen[key]
    if model is None:
        model = _new_model(
            owner=owner,
            name=spec.model,
            first=first,
            visibility=visibility,
            description=description,
        )
        session.add(model)
        try:
            session.flush()
        except IntegrityError:  # a concurrent request took the name first
            session.rollback()
            raise Conflict(f"The name '{spec.model}' is taken.") from None
    now = utcnow()
    training = Training(
        owner_id=owner.id,
        model_id=model.id,
        model_name=model.name,
        datasets=ids,
        architecture=architecture,
        config=config,
        base_version=base_number,
        classes=classes,
        hyperparameters=hp,
        status=QUEUED,
        epoch=0,
        epochs=int(hp["epochs"]),
        created_at=now,
        dispatched_at=now,
    )
    session.add(training)
    session.commit()
    return training


def get_training(session: Session, *, owner: User, training_id: uuid.UUID) -> Training:
    return get_owned(
        session, Training, training_id, owner_id=owner.id, missing=NotFound("No such training.")
    )


def list_trainings(
    session: Session, *, owner: User, params: PageParams
) -> tuple[list[Training], str | None]:
    return fetch_page(session, select(Training).where(Training.owner_id == owner.id), params)


def add_event(session: Session, training_id: uuid.UUID, event: str, data: dict[str, Any]) -> None:
    """Append an event in the caller's transaction (seq: one more than the last)."""
    last = session.scalar(
        select(func.max(TrainingEvent.seq)).where(TrainingEvent.training_id == training_id)
    )
    session.add(
        TrainingEvent(
            training_id=training_id,
            seq=(last or 0) + 1,
            event=event,
            data=data,
            created_at=utcnow(),
        )
    )


def cancel_training(session: Session, *, training: Training) -> Training:
    if training.status in FINISHED:
        raise Conflict(f"The training already finished ({training.status}).")
    for _ in range(3):
        result = session.execute(
            update(Training)
            .where(Training.id == training.id, Training.status.in_([QUEUED, RUNNING]))
            .values(status=CANCELED, finished_at=utcnow(), lease_expires_at=None)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            break
        add_event(session, training.id, END, {"status": CANCELED, "version": None})
        try:
            session.commit()
            break
        except IntegrityError:  # the worker wrote an epoch event at that moment
            session.rollback()
    session.refresh(training)
    if training.status != CANCELED:
        raise Conflict(f"The training already finished ({training.status}).")
    return training


def release_checkpoint(database: Database, store: ArtifactStore, digest: str) -> None:
    """Delete a checkpoint blob unless a training's row still points at it: the store is
    content-addressed, and two runs with the same seed write the same bytes."""
    with database.session() as session:
        held = session.scalar(
            select(Training.id).where(Training.checkpoint_sha256 == digest).limit(1)
        )
    if held is None:
        store.delete(digest)


def drop_checkpoint(
    session: Session, database: Database, store: ArtifactStore, training: Training
) -> None:
    """Forget a finished training's checkpoint. Only once it is finished: no attempt can
    write another one then, so the digest read here is the last."""
    digest = training.checkpoint_sha256
    if digest and training.status in FINISHED:
        training.checkpoint_sha256 = None
        session.commit()
        release_checkpoint(database, store, digest)


def cancel_owned(
    session: Session,
    database: Database,
    store: ArtifactStore,
    metrics: Metrics,
    *,
    owner: User,
    training_id: uuid.UUID,
) -> Training:
    """The owner's cancel, for the API and the dashboard: stop the training, count it, and
    free its checkpoint."""
    training = get_training(session, owner=owner, training_id=training_id)
    canceled = cancel_training(session, training=training)
    metrics.trainings.labels("canceled").inc()
    drop_checkpoint(session, database, store, canceled)
    return canceled


def events_after(session: Session, *, training_id: uuid.UUID, seq: int) -> list[TrainingEvent]:
    return list(
        session.scalars(
            select(TrainingEvent)
            .where(TrainingEvent.training_id == training_id, TrainingEvent.seq > seq)
            .order_by(TrainingEvent.seq)
        )
    )


def to_read(training: Training) -> TrainingRead:
    finished = training.status in FINISHED
    progress = 1.0 if finished else training.epoch / max(training.epochs, 1)
    datasets_: str | list[str] = (
        training.datasets[0] if len(training.datasets) == 1 else list(training.datasets)
    )
    return TrainingRead(
        id=training.id,
        status=training.status,
        model=training.model_name,
        dataset=datasets_,
        architecture=training.architecture,
        config=training.config,
        base_version=training.base_version,
        hyperparameters=training.hyperparameters,
        epoch=training.epoch,
        epochs=training.epochs,
        progress=progress,
        metrics=training.metrics,
        version=training.version,
        error=training.error,
        created_at=training.created_at,
        started_at=training.started_at,
        finished_at=training.finished_at,
    )


def check_quotas(session: Session, quotas: Quotas, *, owner: User, model_name: str) -> None:
    """A training is queued, and makes a model (when the caller has none of that name) or
    adds a version to it when it succeeds."""
    quotas.check(session, owner, Quota.TRAININGS)
    quotas.check(session, owner, Quota.TRAINING_SECONDS_PER_MONTH)
    model = session.scalar(
        select(Model).where(Model.name == model_name, Model.owner_id == owner.id)
    )
    if model is None:
        taken = session.scalar(select(Model.id).where(Model.name == model_name))
        if taken is None:  # someone else's name is create_training's 403/404 to give
            quotas.check(session, owner, Quota.MODELS)
    else:
        quotas.check(
            session, owner, Quota.VERSIONS_PER_MODEL, model_id=model.id, model_name=model.name
        )
