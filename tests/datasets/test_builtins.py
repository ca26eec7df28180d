"""Tests for aiaas.datasets.builtins: the bundled datasets and the synthetic waves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aiaas.datasets.builtins import BUILTINS, WAVE_SHAPES, load_builtin, make_waves
from aiaas.errors import NotFound

EXPECTED = {
    "builtin:digits": ("classification", 1797, (1, 8, 8), list(range(10))),
    "builtin:digits-flat": ("classification", 1797, (64,), list(range(10))),
    "builtin:iris": ("classification", 150, (4,), ["setosa", "versicolor", "virginica"]),
    "builtin:wine": ("classification", 178, (13,), ["class_0", "class_1", "class_2"]),
    "builtin:breast_cancer": ("classification", 569, (30,), ["malignant", "benign"]),
    "builtin:diabetes": ("regression", 442, (10,), None),
    "builtin:waves": ("classification", 1200, (32, 1), ["sawtooth", "sine", "square", "triangle"]),
}


def test_the_catalogue() -> None:
    assert list(BUILTINS) == list(EXPECTED)
    for dataset_id, info in BUILTINS.items():
        assert info.id == dataset_id
        assert info.task == EXPECTED[dataset_id][0]
        assert info.name
        assert info.description


@pytest.mark.parametrize("dataset_id", list(EXPECTED))
def test_shapes_classes_and_dtypes(dataset_id: str) -> None:
    task, rows, shape, classes = EXPECTED[dataset_id]
    ds = load_builtin(dataset_id)
    assert ds.task == task
    assert ds.rows == rows
    assert ds.input_shape == shape
    assert ds.classes == classes
    assert ds.x.dtype == np.float32
    assert np.isfinite(ds.x).all()
    if classes is None:
        assert ds.y.dtype == np.float32
    else:
        assert ds.y.dtype == np.int64
        assert all(type(label) is type(classes[0]) for label in ds.classes or [])
        # Every class has rows.
        assert np.bincount(ds.y, minlength=len(classes)).min() > 0


@pytest.mark.parametrize("dataset_id", list(EXPECTED))
def test_arrays_are_read_only(dataset_id: str) -> None:
    ds = load_builtin(dataset_id)
    assert not ds.x.flags.writeable
    assert not ds.y.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        ds.x[0] = 1


def test_loaded_once_and_class_list_is_the_callers_own() -> None:
    first = load_builtin("builtin:iris")
    assert first.classes is not None
    first.classes.append("rose")
    second = load_builtin("builtin:iris")
    assert second.x is first.x
    assert second.classes == ["setosa", "versicolor", "virginica"]


def test_digits_keep_their_pixel_values() -> None:
    images = load_builtin("builtin:digits")
    flat = load_builtin("builtin:digits-flat")
    assert images.x.min() == 0
    assert images.x.max() == 16
    np.testing.assert_array_equal(images.x.reshape(-1, 64), flat.x)
    np.testing.assert_array_equal(images.y, flat.y)


def test_unknown_builtin_is_not_found() -> None:
    with pytest.raises(NotFound, match=r"builtin:nope.*builtin:digits"):
        load_builtin("builtin:nope")


def test_waves_are_deterministic() -> None:
    a, b = make_waves(seed=3), make_waves(seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(make_waves(seed=4).x, a.x)
    np.testing.assert_array_equal(load_builtin("builtin:waves").x, make_waves().x)


def test_waves_shape_and_balance() -> None:
    ds = make_waves(n_per_class=10, length=16, seed=1)
    assert ds.x.shape == (40, 16, 1)
    assert ds.classes == list(WAVE_SHAPES)
    assert np.bincount(ds.y).tolist() == [10, 10, 10, 10]
    # Shuffled, so a split by position still sees every class.
    assert len(set(ds.y[:12].tolist())) > 1


def test_waves_vary_and_are_noisy() -> None:
    ds = make_waves()
    sines = ds.x[ds.y == WAVE_SHAPES.index("sine"), :, 0]
    # Amplitude and offset differ from row to row.
    assert np.ptp(sines.max(axis=1)) > 0.3
    squares = ds.x[ds.y == WAVE_SHAPES.index("square"), :, 0]
    # A clean square wave takes two values.
    assert len(np.unique(np.round(squares[0], 3))) > 2


def test_waves_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="n_per_class"):
        make_waves(n_per_class=0)
    with pytest.raises(ValueError, match="length"):
        make_waves(length=4)


def test_importing_does_not_load_scikit_learn() -> None:
    # A fresh interpreter: this test process may have imported scikit-learn already.
    probe = (
        "import json, sys\n"
        "import aiaas.datasets.builtins, aiaas.datasets.parsing, aiaas.datasets.arrays\n"
        "print(json.dumps([m for m in ('sklearn', 'sqlalchemy', 'celery', 'torch')"
        " if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
