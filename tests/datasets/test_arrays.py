"""Tests for aiaas.datasets.arrays: the dataset type, its NPZ form and pooling."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aiaas.datasets.arrays import (
    ClassLabel,
    DatasetArrays,
    from_npz_bytes,
    pool,
    to_npz_bytes,
)
from aiaas.errors import InvalidInput


def _classification(
    labels: list[int], classes: list[ClassLabel], shape: tuple[int, ...] = (3,), start: float = 0
) -> DatasetArrays:
    rows = len(labels)
    x = (np.arange(rows * int(np.prod(shape)), dtype=np.float32) + start).reshape(rows, *shape)
    return DatasetArrays(
        x=x, y=np.array(labels, dtype=np.int64), task="classification", classes=classes
    )


def _regression(rows: int, shape: tuple[int, ...] = (3,)) -> DatasetArrays:
    x = np.ones((rows, *shape), dtype=np.float32)
    return DatasetArrays(x=x, y=np.arange(rows, dtype=np.float32), task="regression", classes=None)


def _loc(exc: pytest.ExceptionInfo[InvalidInput]) -> list[Any]:
    assert exc.value.errors is not None
    loc: list[Any] = exc.value.errors[0]["loc"]
    return loc


def test_rows_and_input_shape() -> None:
    ds = _classification([0, 1, 1, 0], ["a", "b"], shape=(1, 2, 2))
    assert ds.rows == 4
    assert ds.input_shape == (1, 2, 2)
    assert all(type(d) is int for d in ds.input_shape)


@pytest.mark.parametrize(
    ("x", "y", "task", "classes"),
    [
        (np.zeros((2, 3)), np.zeros(2, dtype=np.int64), "classification", ["a", "b"]),
        (np.zeros(2, dtype=np.float32), np.zeros(2, dtype=np.int64), "classification", ["a"]),
        (np.zeros((2, 3), np.float32), np.zeros(3, np.int64), "classification", ["a", "b"]),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.float32), "classification", ["a", "b"]),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.int64), "classification", None),
        (np.zeros((2, 3), np.float32), np.array([0, 2]), "classification", ["a", "b"]),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.int64), "regression", None),
        (np.zeros((2, 3), np.float32), np.zeros(2, np.float32), "regression", ["a"]),
    ],
)
def test_inconsistent_arrays_are_a_programming_error(
    x: npt.NDArray[Any], y: npt.NDArray[Any], task: Any, classes: Any
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any message; it is not client-facing
        DatasetArrays(x=x, y=y, task=task, classes=classes)


def test_empty_dataset_is_allowed() -> None:
    ds = _classification([], ["a", "b"])
    assert ds.rows == 0


@pytest.mark.parametrize(
    "ds",
    [_classification([0, 2, 1], [3, 5, 9], shape=(2, 2)), _regression(4)],
    ids=["classification", "regression"],
)
def test_npz_round_trip(ds: DatasetArrays) -> None:
    data = to_npz_bytes(ds)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["X", "y"]
    back = from_npz_bytes(data, task=ds.task, classes=ds.classes)
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.y, ds.y)
    assert back.x.dtype == np.float32
    assert back.y.dtype == ds.y.dtype
    assert back.task == ds.task
    assert back.classes == ds.classes


def test_from_npz_copies_the_class_list() -> None:
    classes: list[ClassLabel] = ["a", "b"]
    back = from_npz_bytes(
        to_npz_bytes(_classification([0, 1], classes)), task="classification", classes=classes
    )
    assert back.classes == classes
    assert back.classes is not classes


def test_pool_remaps_classes_by_label_onto_the_first() -> None:
    first = _classification([0, 1, 2], ["cat", "dog", "eel"])
    second = _classification([0, 1, 1], ["dog", "eel"], start=100)
    pooled = pool([first, second], names=["a", "b"])
    assert pooled.classes == ["cat", "dog", "eel"]
    assert pooled.rows == 6
    assert pooled.y.tolist() == [0, 1, 2, 1, 2, 2]
    np.testing.assert_array_equal(pooled.x, np.concatenate([first.x, second.x]))
    assert pooled.task == "classification"


def test_pool_integer_labels() -> None:
    first = _classification([0, 1], [0, 1, 2])
    second = _classification([0, 1], [2, 0])
    pooled = pool([first, second], names=["a", "b"])
    assert pooled.classes == [0, 1, 2]
    assert pooled.y.tolist() == [0, 1, 2, 0]


def test_pool_does_not_confuse_integer_and_string_labels() -> None:
    first = _classification([0, 1], [0, 1])
    second = _classification([0, 1], ["0", "1"])
    with pytest.raises(InvalidInput) as exc:
        pool([first, second], names=["ints", "strings"])
    assert _loc(exc) == ["dataset", 1]
    assert "'strings'" in exc.value.detail


def test_pool_regression() -> None:
    pooled = pool([_regression(2), _regression(3)], names=["a", "b"])
    assert pooled.classes is None
    assert pooled.y.tolist() == [0, 1, 0, 1, 2]
    assert pooled.y.dtype == np.float32


def test_pool_of_read_only_arrays() -> None:
    ds = _classification([0, 1], ["a", "b"])
    ds.x.setflags(write=False)
    ds.y.setflags(write=False)
    pooled = pool([ds, ds], names=["a", "a"])
    assert pooled.rows == 4
    assert pooled.x.flags.writeable


def test_pool_refuses_another_task() -> None:
    with pytest.raises(InvalidInput) as exc:
        pool(
            [_classification([0, 1], ["a", "b"]), _regression(2)],
            names=["builtin:iris", "mine"],
        )
    assert _loc(exc) == ["dataset", 1]
    assert "'mine'" in exc.value.detail
    assert "regression" in exc.value.detail


def test_pool_refuses_another_input_shape() -> None:
    datasets = [
        _classification([0, 1], ["a", "b"]),
        _classification([0, 1], ["a", "b"]),
        _classification([0, 1], ["a", "b"], shape=(4,)),
    ]
    with pytest.raises(InvalidInput) as exc:
        pool(datasets, names=["a", "b", "c"])
    assert _loc(exc) == ["dataset", 2]
    assert "'c'" in exc.value.detail
    assert "[4]" in exc.value.detail
    assert "[3]" in exc.value.detail


def test_pool_refuses_classes_the_first_lacks() -> None:
    with pytest.raises(InvalidInput) as exc:
        pool(
            [_classification([0, 1], ["cat", "dog"]), _classification([0, 1], ["dog", "fox"])],
            names=["pets", "wild"],
        )
    assert _loc(exc) == ["dataset", 1]
    assert "'wild'" in exc.value.detail
    assert "'fox'" in exc.value.detail


def test_pool_onto_given_classes_checks_every_dataset() -> None:
    first = _classification([0, 1], ["b", "a"])
    second = _classification([0], ["c", "a"])
    pooled = pool([first, second], names=["x", "y"], classes=["a", "b", "c"])
    assert pooled.classes == ["a", "b", "c"]
    assert pooled.y.tolist() == [1, 0, 2]

    with pytest.raises(InvalidInput) as exc:
        pool([first, second], names=["x", "y"], classes=["a", "c"])
    assert _loc(exc) == ["dataset", 0]
    assert "model's labels" in exc.value.detail


def test_pool_needs_one_name_per_dataset() -> None:
    ds = _regression(2)
    with pytest.raises(ValueError, match="one name per dataset"):
        pool([ds, ds], names=["a"])
    with pytest.raises(ValueError, match="at least one dataset"):
        pool([], names=[])
