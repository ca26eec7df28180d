"""A dataset as arrays: the one shape uploads, built-ins and feedback all take before training.

Nothing here knows where the rows came from; storage keeps only ``X`` and ``y`` in an NPZ and
the task and class list beside it, so :func:`from_npz_bytes` is handed those back.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

import numpy as np
import numpy.typing as npt

from aiaas.errors import InvalidInput
from aiaas.ml.task import Task

ClassLabel: TypeAlias = str | int


# eq=False: the generated __eq__ would compare arrays element-wise and then fail on their truth
# value; compare ``x`` and ``y`` with numpy instead.
@dataclass(frozen=True, eq=False)
class DatasetArrays:
    """Rows of one dataset.

    ``x`` is float32 ``[rows, *input_shape]``. ``y`` holds int64 indices into ``classes`` for
    classification and float32 targets for regression. ``classes`` lists the class labels in
    index order (names when the data has them, else the integer labels) and is ``None`` for
    regression.
    """

    x: npt.NDArray[np.float32]
    y: npt.NDArray[Any]
    task: Task
    classes: list[ClassLabel] | None

    def __post_init__(self) -> None:
        # A mismatch here is a bug in whoever built the arrays, not the client's doing.
        if self.x.dtype != np.float32 or self.x.ndim < 2:
            raise ValueError(f"x must be float32 [rows, ...], got {self.x.dtype} {self.x.shape}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must have shape ({self.x.shape[0]},), got {self.y.shape}")
        if self.task == "regression":
            if self.y.dtype != np.float32 or self.classes is not None:
                raise ValueError("regression needs float32 y and classes=None")
            return
        if self.y.dtype != np.int64 or self.classes is None:
            raise ValueError("classification needs int64 y and a list of classes")
        if self.y.size and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise ValueError(f"y holds indices outside 0..{len(self.classes) - 1}")

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])


def to_npz_bytes(ds: DatasetArrays) -> bytes:
    """``X`` and ``y`` as an uncompressed NPZ; the task and classes are the caller's to keep."""
    buffer = io.BytesIO()
    np.savez(buffer, X=ds.x, y=ds.y)
    return buffer.getvalue()


def from_npz_bytes(
    data: bytes, *, task: Task, classes: Sequence[ClassLabel] | None
) -> DatasetArrays:
    """Read back what :func:`to_npz_bytes` wrote."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        x = np.ascontiguousarray(npz["X"], dtype=np.float32)
        y = npz["y"]
    y = y.astype(np.int64 if task == "classification" else np.float32, copy=False)
    return DatasetArrays(x=x, y=y, task=task, classes=None if classes is None else list(classes))


def pool(
    datasets: Sequence[DatasetArrays],
    *,
    names: Sequence[str],
    classes: Sequence[ClassLabel] | None = None,
) -> DatasetArrays:
    """The rows of several datasets of one task and input shape, in the order given.

    Class indices are remapped by label onto ``classes`` when it is given (a model's labels),
    else onto the first dataset's class list, whose order is kept. A dataset that does not fit
    raises :class:`InvalidInput` located at ``["dataset", i]``.
    """
    if not datasets or len(names) != len(datasets):
        raise ValueError("pool needs at least one dataset and one name per dataset")
    first = datasets[0]
    target: list[ClassLabel] | None = None
    if first.task == "classification":
        target = list(classes) if classes is not None else list(first.classes or [])
    index = {label: i for i, label in enumerate(target or [])}

    ys: list[npt.NDArray[Any]] = []
    for i, (ds, name) in enumerate(zip(datasets, names, strict=True)):
        if ds.task != first.task:
            _refuse(i, f"'{name}' is a {ds.task} dataset but '{names[0]}' is {first.task}.")
        if ds.input_shape != first.input_shape:
            _refuse(
                i,
                f"'{name}' has input shape {list(ds.input_shape)} but '{names[0]}' has "
                f"{list(first.input_shape)}.",
            )
        if ds.classes is None:
            ys.append(ds.y)
            continue
        missing = [label for label in ds.classes if label not in index]
        if missing:
            against = "the model's labels" if classes is not None else f"'{names[0]}'"
            shown = ", ".join(repr(label) for label in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            _refuse(i, f"'{name}' has classes that {against} lacks: {shown}{more}.")
        lookup = np.array([index[label] for label in ds.classes], dtype=np.int64)
        ys.append(lookup[ds.y])

    return DatasetArrays(
        x=np.concatenate([ds.x for ds in datasets]),
        y=np.concatenate(ys),
        task=first.task,
        classes=target,
    )


def _refuse(position: int, msg: str) -> NoReturn:
    raise InvalidInput(
        f"The datasets cannot be pooled: {msg}",
        errors=[{"loc": ["dataset", position], "msg": msg}],
    )
