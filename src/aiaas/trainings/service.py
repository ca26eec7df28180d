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
from aiaas.db import utcnow
from aiaas.errors import Conflict, InvalidInput, NotFound
from aiaas.ml import architectures, defaults
from aiaas.ml.errors import UnknownArchitecture
from aiaas.pagination import PageParams, fetch_page
from aiaas.registry import service as registry
from aiaas.registry import versions
from aiaas.registry.models import Model
from aiaas.registry.schemas import ModelCreate
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


def _model_for(session: Session, *, owner: User, name: str, first: DatasetRead) -> Model:
    """The caller's model of that name, made (private) from the dataset when there is none."""
    try:
        model = registry.writable_model(session, name=name, user=owner)
    except NotFound:
        try:
            spec = ModelCreate(
                name=name,
                task=first.task,
                labels=version_labels(first.classes),
                description=f"Trained on {first.id}.",
            )
        except ValueError:
            raise InvalidInput(
                f"'{name}' is not a valid model name.",
                errors=[{"loc": ["body", "model"], "msg": "lowercase slug, 2-63 characters"}],
            ) from None
        return registry.create_model(session, owner=owner, spec=spec)
    if model.task != first.task:
        raise _dataset_problem(None, f"'{first.id}' is {first.task}; '{name}' is {model.task}.")
    return model


def create_training(
    session: Session, *, owner: User, spec: TrainingCreate, max_parameters: int
) -> Training:
    ids = spec.dataset_ids
    many = not isinstance(spec.dataset, str)
    reads = [datasets.describe(session, owner=owner, dataset_id=i) for i in ids]
    check_datasets(reads, many=many)
    first = reads[0]
    rows = sum(r.rows for r in reads)
    if rows < 2:
        raise _dataset_problem(None, "There are fewer than 2 rows to train on.")
    model = _model_for(session, owner=owner, name=spec.model, first=first)
    shape = tuple(first.input_shape)

    base_number: int | None = None
    if spec.base_version is not None:
        base = versions.resolve_version(session, model=model, ref=spec.base_version)
        base_number = base.number
        architecture, config = base.architecture, dict(base.config)
        classes = target_classes(reads, labels=base.labels or model.labels, many=many)
        if classes is not None and not base.labels and not model.labels:
            classes = list(range(int(config.get("output_dim", 0))))
            target_classes(reads, labels=classes, many=many)
        expected = base.input_shape
    else:
        assert spec.architecture is not None
        architecture = spec.architecture
        classes = target_classes(reads, labels=model.labels, many=many)
        outputs = len(classes) if classes is not None else 1
        given = (spec.config or {}).get("output_dim", outputs)
        if given != outputs:
            raise InvalidInput(
                f"The config has {given} outputs; the data has {outputs}.",
                errors=[{"loc": ["body", "config", "output_dim"], "msg": f"expected {outputs}"}],
            )
        try:
            architectures.get_architecture(architecture)
            raw = spec.config or defaults.default_config(architecture, shape, outputs)
            config = defaults.fit_config(architecture, raw, shape, outputs)
        except defaults.ShapeMismatch as exc:
            if spec.config is None:
                raise _dataset_problem(None, exc.msg) from None
            raise InvalidInput(
                exc.msg, errors=[{"loc": ["body", "config"], "msg": exc.msg}]
            ) from None
        except UnknownArchitecture:
            config = dict(spec.config or {})  # checked_config names the unknown architecture
        parsed = versions.checked_config(
            architecture, config, max_parameters=max_parameters, loc=("body", "config")
        )
        config = parsed.model_dump(mode="json")
        expected = list(architectures.input_spec(architecture, parsed).shape)
        output_dim = int(config.get("output_dim", 0))
        if output_dim != outputs:
            raise InvalidInput(
                f"The config has {output_dim} outputs; the data has {outputs}.",
                errors=[{"loc": ["body", "config", "output_dim"], "msg": f"expected {outputs}"}],
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
    now = utcnow()
    training = Training(
        owner_id=owner.id,
        model_id=model.id,
        model_name=model.name,
        datasets=ids if many else ids[:1],
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
    training = session.get(Training, training_id)
    if training is None or training.owner_id != owner.id:
        raise NotFound("No such training.")
    return training


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
