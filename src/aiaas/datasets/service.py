"""Datasets by id: built-ins (``builtin:<name>``), the caller's uploads (a uuid) and the
caller's feedback on a model's predictions (``feedback:<model>``).

Uploads are parsed and checked completely before anything is stored; their arrays live in the
artifact store as one NPZ. Feedback sets are not stored: they are gathered from the caller's
predictions each time a training reads them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aiaas.accounts.models import User
from aiaas.datasets import builtins
from aiaas.datasets.arrays import ClassLabel, DatasetArrays, from_npz_bytes, pool, to_npz_bytes
from aiaas.datasets.models import Dataset
from aiaas.datasets.parsing import parse_upload
from aiaas.datasets.schemas import DatasetRead
from aiaas.db import get_owned, utcnow
from aiaas.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from aiaas.ml.task import Task
from aiaas.pagination import PageParams, fetch_page
from aiaas.predictions.models import Prediction
from aiaas.predictions.service import load_inputs
from aiaas.quotas import Quota, Quotas
from aiaas.registry import service as registry
from aiaas.registry.models import Model, ModelVersion
from aiaas.registry.versions import ensure_blob, feedback_classes
from aiaas.storage import ArtifactStore

BUILTIN = "builtin:"
FEEDBACK = "feedback:"


def _not_found(dataset_id: str) -> NotFound:
    return NotFound(f"No dataset '{dataset_id}'.")


def _builtin_read(dataset_id: str) -> DatasetRead:
    info = builtins.BUILTINS[dataset_id]
    arrays = builtins.load_builtin(dataset_id)
    return DatasetRead(
        id=dataset_id,
        name=info.name,
        task=info.task,
        source="builtin",
        rows=arrays.rows,
        input_shape=list(arrays.input_shape),
        classes=arrays.classes,
        description=info.description,
    )


def _upload_read(dataset: Dataset) -> DatasetRead:
    return DatasetRead(
        id=str(dataset.id),
        name=dataset.name,
        task=dataset.task,
        source="upload",
        rows=dataset.rows,
        input_shape=dataset.input_shape,
        classes=dataset.classes,
        created_at=dataset.created_at,
    )


def _uploaded(session: Session, *, owner_id: uuid.UUID, dataset_id: str) -> Dataset:
    try:
        ident = uuid.UUID(dataset_id)
    except ValueError:
        raise _not_found(dataset_id) from None
    return get_owned(session, Dataset, ident, owner_id=owner_id, missing=_not_found(dataset_id))


# ---- feedback sets -------------------------------------------------------------------------


def _feedback_rows(session: Session, *, owner_id: uuid.UUID, model: Model) -> list[Prediction]:
    return list(
        session.scalars(
            select(Prediction)
            .where(
                Prediction.owner_id == owner_id,
                Prediction.model_id == model.id,
                Prediction.feedback_at.is_not(None),
            )
            .order_by(Prediction.feedback_at, Prediction.id)
        )
    )


def _feedback_model(session: Session, *, owner: User, dataset_id: str) -> Model:
    name = dataset_id.removeprefix(FEEDBACK)
    try:
        return registry.readable_model(session, name=name, user=owner)
    except NotFound:
        raise _not_found(dataset_id) from None


def _feedback_read(session: Session, *, owner: User, dataset_id: str) -> DatasetRead:
    model = _feedback_model(session, owner=owner, dataset_id=dataset_id)
    mine = (
        Prediction.owner_id == owner.id,
        Prediction.model_id == model.id,
        Prediction.feedback_at.is_not(None),
    )
    rows = session.scalar(select(func.coalesce(func.sum(Prediction.input_rows), 0)).where(*mine))
    # The shape of the version the first feedback row was predicted with (what training keeps),
    # else the latest version's.
    number = session.scalar(
        select(Prediction.version).where(*mine).order_by(Prediction.feedback_at).limit(1)
    )
    order = ModelVersion.number.desc()
    version = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_id == model.id)
        .order_by((ModelVersion.number == number).desc(), order)
        .limit(1)
    )
    input_shape = [int(d or 0) for d in version.input_shape] if version is not None else []
    return DatasetRead(
        id=dataset_id,
        name=f"Feedback on {model.name}",
        task=model.task,
        source="feedback",
        rows=int(rows or 0),
        input_shape=input_shape,
        classes=feedback_classes(session, model, number),
    )


def feedback_arrays(
    session: Session, *, store: ArtifactStore, owner_id: uuid.UUID, model: Model
) -> DatasetArrays:
    """The inputs the account sent to ``model`` with the labels it gave back, one row each.

    Rows whose shape differs from the first one's (a later version took other inputs) are left
    out rather than failing the whole set."""
    rows = _feedback_rows(session, owner_id=owner_id, model=model)
    # The classes of the version the first row was predicted with (as the set's description
    # says); rows of versions whose labels are not among them are left out.
    classes = feedback_classes(session, model, rows[0].version if rows else None)
    xs: list[np.ndarray] = []
    ys: list[float | int] = []
    for job in rows:
        inputs = load_inputs(job, store=store)
        if xs and inputs.shape[1:] != xs[0].shape[1:]:
            continue
        labels = job.feedback or []
        if len(labels) != inputs.shape[0]:
            continue
        if classes is not None and any(label not in classes for label in labels):
            continue
        xs.append(inputs.astype(np.float32, copy=False))
        for label in labels:
            ys.append(classes.index(label) if classes is not None else float(label))
    if not xs:
        raise InvalidInput(
            f"There is no feedback on '{model.name}' yet.",
            errors=[{"loc": ["body", "dataset"], "msg": "the feedback set is empty"}],
        )
    x = np.concatenate(xs)
    y = np.asarray(ys, dtype=np.int64 if classes is not None else np.float32)
    if classes is None:
        return DatasetArrays(x=x, y=y, task="regression", classes=None)
    return DatasetArrays(x=x, y=y, task="classification", classes=classes)


# ---- the routes' operations ----------------------------------------------------------------


def describe(session: Session, *, owner: User, dataset_id: str) -> DatasetRead:
    if dataset_id in builtins.BUILTINS:
        return _builtin_read(dataset_id)
    if dataset_id.startswith(BUILTIN):
        raise _not_found(dataset_id)
    if dataset_id.startswith(FEEDBACK):
        return _feedback_read(session, owner=owner, dataset_id=dataset_id)
    return _upload_read(_uploaded(session, owner_id=owner.id, dataset_id=dataset_id))


def list_datasets(
    session: Session, *, owner: User, params: PageParams
) -> tuple[list[DatasetRead], str | None]:
    """Built-ins and feedback sets head the first page; the caller's uploads follow (newest
    first)."""
    head: list[DatasetRead] = []
    if params.cursor is None:
        head = [_builtin_read(i) for i in builtins.BUILTINS]
        names = session.scalars(
            select(Prediction.model_name)
            .where(Prediction.owner_id == owner.id, Prediction.feedback_at.is_not(None))
            .distinct()
        )
        for name in sorted(names):
            try:
                head.append(_feedback_read(session, owner=owner, dataset_id=FEEDBACK + name))
            except NotFound:  # the model went away since
                continue
    rows, cursor = fetch_page(session, select(Dataset).where(Dataset.owner_id == owner.id), params)
    return head + [_upload_read(d) for d in rows], cursor


def upload_dataset(
    session: Session,
    quotas: Quotas,
    *,
    owner: User,
    store: ArtifactStore,
    file: BinaryIO,
    max_bytes: int,
    filename: str | None,
    content_type: str | None,
    name: str,
    task: Task,
    label_column: str,
    input_shape: Sequence[int] | None,
) -> Dataset:
    """An uploaded file as a dataset of ``owner``'s, for the API and the dashboard: read up to
    ``max_bytes`` (413 past it), the stored-bytes quota checked, then parsed whole."""
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The file is over the limit of {max_bytes:,} bytes.",
            errors=[{"loc": ["file"], "msg": f"larger than {max_bytes:,} bytes"}],
        )
    # The upload's size stands for what will be stored (the parsed arrays, as NPZ).
    quotas.check(session, owner, Quota.STORED_BYTES, adding=len(data))
    return create_dataset(
        session,
        owner=owner,
        store=store,
        data=data,
        filename=filename,
        content_type=content_type,
        name=name,
        task=task,
        label_column=label_column,
        input_shape=input_shape,
    )


def create_dataset(
    session: Session,
    *,
    owner: User,
    store: ArtifactStore,
    data: bytes,
    filename: str | None,
    content_type: str | None,
    name: str,
    task: Task,
    label_column: str,
    input_shape: Sequence[int] | None,
) -> Dataset:
    # Parsing a large file takes a while: end the request's read transaction first, which on
    # SQLite would otherwise hold the database's write lock all along.
    session.rollback()
    arrays = parse_upload(
        data,
        filename=filename,
        content_type=content_type,
        task=task,
        label_column=label_column,
        input_shape=input_shape,
    )
    packed = to_npz_bytes(arrays)
    info = store.put_bytes(packed)
    dataset = Dataset(
        owner_id=owner.id,
        name=name,
        task=task,
        rows=arrays.rows,
        input_shape=list(arrays.input_shape),
        classes=arrays.classes,
        sha256=info.sha256,
        size_bytes=info.size_bytes,
        created_at=utcnow(),
    )
    session.add(dataset)
    session.commit()
    # A concurrent delete of a dataset with the same bytes may have removed the blob.
    ensure_blob(store, info.sha256, packed)
    return dataset


def delete_dataset(session: Session, *, owner: User, store: ArtifactStore, dataset_id: str) -> None:
    if dataset_id.startswith(BUILTIN):
        describe(session, owner=owner, dataset_id=dataset_id)  # 404 for an unknown name
        raise Forbidden("Built-in datasets cannot be deleted.")
    if dataset_id.startswith(FEEDBACK):
        model = _feedback_model(session, owner=owner, dataset_id=dataset_id)
        for job in _feedback_rows(session, owner_id=owner.id, model=model):
            job.feedback = None
            job.feedback_at = None
        session.commit()
        return
    dataset = _uploaded(session, owner_id=owner.id, dataset_id=dataset_id)
    digest = dataset.sha256
    session.delete(dataset)
    session.commit()
    if session.scalar(select(Dataset.id).where(Dataset.sha256 == digest).limit(1)) is None:
        store.delete(digest)


def load_arrays(
    session: Session, *, store: ArtifactStore, owner: User, dataset_id: str
) -> DatasetArrays:
    if dataset_id in builtins.BUILTINS:
        return builtins.load_builtin(dataset_id)
    if dataset_id.startswith(BUILTIN):
        raise _not_found(dataset_id)
    if dataset_id.startswith(FEEDBACK):
        model = _feedback_model(session, owner=owner, dataset_id=dataset_id)
        return feedback_arrays(session, store=store, owner_id=owner.id, model=model)
    dataset = _uploaded(session, owner_id=owner.id, dataset_id=dataset_id)
    task: Task = "regression" if dataset.task == "regression" else "classification"
    return from_npz_bytes(store.get_bytes(dataset.sha256), task=task, classes=dataset.classes)


def display_name(session: Session, *, owner: User, dataset_id: str) -> str:
    """The name a dataset is listed under (a built-in's title, an upload's given name)."""
    if dataset_id in builtins.BUILTINS:
        return builtins.BUILTINS[dataset_id].name
    if dataset_id.startswith(FEEDBACK):
        return f"Feedback on {dataset_id.removeprefix(FEEDBACK)}"
    return _uploaded(session, owner_id=owner.id, dataset_id=dataset_id).name


def load_each(
    session: Session, *, store: ArtifactStore, owner: User, dataset_ids: Sequence[str]
) -> list[DatasetArrays]:
    """Each dataset's rows, in the order given (a training records what each one gave)."""
    return [load_arrays(session, store=store, owner=owner, dataset_id=i) for i in dataset_ids]


def pool_loaded(
    parts: Sequence[DatasetArrays],
    *,
    dataset_ids: Sequence[str],
    classes: Sequence[ClassLabel] | None = None,
) -> DatasetArrays:
    """The rows of ``parts`` (``load_each`` of ``dataset_ids``) together, class indices
    mapped onto ``classes`` when given.

    Labels are matched as text, so an upload's integer 3 and a model's label "3" are one
    class; the pooled set then names its classes as text."""
    if len(parts) == 1 and classes is None:
        return parts[0]
    target = [str(c) for c in classes] if classes is not None else None
    as_text = [
        dataclasses.replace(p, classes=[str(c) for c in p.classes]) if p.classes else p
        for p in parts
    ]
    pooled: DatasetArrays = pool(as_text, names=list(dataset_ids), classes=target)
    return pooled
