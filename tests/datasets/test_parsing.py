"""Tests for aiaas.datasets.parsing: CSV and NPZ uploads to arrays, and every refusal."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aiaas.datasets import parsing
from aiaas.datasets.parsing import parse_csv, parse_npz, parse_upload
from aiaas.errors import AppError, InvalidInput, PayloadTooLarge, UnsupportedMediaType


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _npz(*, compressed: bool = False, **arrays: Any) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _loc(error: AppError) -> list[Any]:
    assert error.errors is not None
    assert len(error.errors) == 1
    assert error.errors[0]["msg"]
    loc: list[Any] = error.errors[0]["loc"]
    return loc


def _refused(data: bytes, **kwargs: Any) -> InvalidInput:
    kwargs.setdefault("task", "classification")
    with pytest.raises(InvalidInput) as exc:
        parse_csv(data, **kwargs)
    assert exc.value.status == 422
    return exc.value


def _refused_npz(data: bytes, **kwargs: Any) -> InvalidInput:
    kwargs.setdefault("task", "classification")
    with pytest.raises(InvalidInput) as exc:
        parse_npz(data, **kwargs)
    return exc.value


IRIS_LIKE = _csv(
    "sepal_length,sepal_width,label,petal_length",
    "5.1,3.5,setosa,1.4",
    "7.0,3.2,versicolor,4.7",
    "6.3,3.3,virginica,6.0",
    "4.9,3.0,setosa,1.4",
)


# --------------------------------------------------------------------------- CSV, accepted


def test_csv_features_in_header_order_around_the_label() -> None:
    ds = parse_csv(IRIS_LIKE, task="classification")
    assert ds.x.dtype == np.float32
    assert ds.x.flags.c_contiguous
    np.testing.assert_array_equal(
        ds.x,
        np.array([[5.1, 3.5, 1.4], [7.0, 3.2, 4.7], [6.3, 3.3, 6.0], [4.9, 3.0, 1.4]], np.float32),
    )
    assert ds.classes == ["setosa", "versicolor", "virginica"]
    assert ds.y.tolist() == [0, 1, 2, 0]
    assert ds.y.dtype == np.int64
    assert ds.input_shape == (3,)


def test_csv_integer_labels_sort_as_numbers() -> None:
    ds = parse_csv(_csv("a,label", "1,10", "2,3", "3,-1", "4,3", "5,+10"), task="classification")
    assert ds.classes == [-1, 3, 10]
    assert all(type(label) is int for label in ds.classes)
    assert ds.y.tolist() == [2, 1, 0, 1, 2]


def test_csv_integer_labels_written_differently_are_one_class() -> None:
    ds = parse_csv(_csv("a,label", "1,7", "2,07", "3, 8"), task="classification")
    assert ds.classes == [7, 8]
    assert ds.y.tolist() == [0, 0, 1]


def test_csv_labels_are_names_unless_all_are_integers() -> None:
    ds = parse_csv(_csv("a,label", "1,2", "2,two", "3,1.0", "4,2"), task="classification")
    assert ds.classes == ["1.0", "2", "two"]
    assert ds.y.tolist() == [1, 2, 0, 1]


def test_csv_regression() -> None:
    ds = parse_csv(
        _csv("x,y,target", "1,2,0.5", "3,4,-1e3"), task="regression", label_column="target"
    )
    assert ds.classes is None
    assert ds.y.dtype == np.float32
    assert ds.y.tolist() == [0.5, -1000.0]
    assert ds.task == "regression"


def test_csv_one_feature_column_is_enough() -> None:
    ds = parse_csv(_csv("label,only", "a,1", "b,2"), task="classification")
    assert ds.x.shape == (2, 1)


def test_csv_tolerates_bom_crlf_spaces_and_blank_lines() -> None:
    data = "\ufeff a , label \r\n\r\n 1.5 , x \r\n  \r\n2,  y\r\n\r\n".encode()
    ds = parse_csv(data, task="classification")
    assert ds.x[:, 0].tolist() == [1.5, 2.0]
    assert ds.classes == ["x", "y"]


def test_csv_label_column_by_name() -> None:
    ds = parse_csv(
        _csv("species,a", "cat,1", "dog,2"), task="classification", label_column="species"
    )
    assert ds.classes == ["cat", "dog"]


def test_csv_input_shape_reshapes_each_row() -> None:
    header = ",".join(f"p{i}" for i in range(4)) + ",label"
    ds = parse_csv(
        _csv(header, "1,2,3,4,0", "5,6,7,8,1"), task="classification", input_shape=[1, 2, 2]
    )
    assert ds.input_shape == (1, 2, 2)
    assert ds.x[1, 0].tolist() == [[5, 6], [7, 8]]


def test_csv_of_a_few_megabytes_parses() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((10_000, 20))
    lines = [",".join(f"f{i}" for i in range(20)) + ",label"]
    lines += [",".join(f"{v:.6f}" for v in row) + f",{i % 3}" for i, row in enumerate(values)]
    ds = parse_csv(_csv(*lines), task="classification")
    assert ds.x.shape == (10_000, 20)
    np.testing.assert_allclose(ds.x, values, atol=1e-6)
    assert ds.classes == [0, 1, 2]


# --------------------------------------------------------------------------- CSV, refused


@pytest.mark.parametrize("data", [b"", b"\n\n", "\ufeff".encode()])
def test_csv_empty(data: bytes) -> None:
    error = _refused(data)
    assert "empty" in error.detail
    assert _loc(error) == ["file"]


def test_csv_header_only() -> None:
    error = _refused(_csv("a,b,label"))
    assert "no data rows" in error.detail


def test_csv_ragged_row_names_its_line() -> None:
    error = _refused(_csv("a,b,label", "1,2,x", "1,2", "1,2,y"))
    assert "Line 3 has 2 cells but the header has 3 columns" in error.detail
    assert _loc(error) == ["file", 3]


def test_csv_line_numbers_count_blank_lines_and_quoted_line_breaks() -> None:
    data = _csv("a,label", '1,"two', 'lines"', "", " ", "2,x", "3")
    error = _refused(data)
    assert "Line 7 " in error.detail
    assert _loc(error) == ["file", 7]


def test_csv_non_numeric_cell_names_line_and_column() -> None:
    error = _refused(_csv("height,width,label", "1,2,x", "1,abc,y"))
    assert error.detail == "Line 3, column 'width': the cell holds 'abc', which is not a number."
    assert _loc(error) == ["file", 3, "width"]


def test_csv_reports_the_first_bad_cell_in_reading_order() -> None:
    error = _refused(_csv("a,b,label", "1,2,x", "1,oops,y", "no,2,x"))
    assert _loc(error) == ["file", 3, "b"]


def test_csv_long_cells_are_cut_short() -> None:
    secret = "s" * 10_000
    error = _refused(_csv("a,label", f"{secret},x", "1,y"))
    assert secret not in error.detail
    assert len(error.detail) < 200
    assert "…" in error.detail


def test_csv_long_column_names_are_cut_short() -> None:
    name = "n" * 5_000
    error = _refused(_csv(f"{name},label", "zzz,x"))
    assert len(error.detail) < 300
    assert len(str(_loc(error))) < 300


def test_csv_empty_cell() -> None:
    error = _refused(_csv("a,b,label", "1,,x"))
    assert "Line 2, column 'b': the cell is empty" in error.detail


@pytest.mark.parametrize(
    ("cell", "what"),
    [
        ("nan", "NaN"),
        ("NaN", "NaN"),
        ("inf", "infinite"),
        ("-Infinity", "infinite"),
        ("1e39", "beyond the float32 range"),
    ],
)
def test_csv_non_finite_values(cell: str, what: str) -> None:
    error = _refused(_csv("a,b,label", "1,2,x", f"3,{cell},y"))
    assert f"Line 3, column 'b': the value is {what}" in error.detail
    assert _loc(error) == ["file", 3, "b"]


def test_csv_missing_label_column_lists_the_columns() -> None:
    error = _refused(_csv("a,b,c", "1,2,3"), label_column="target")
    assert "no 'target' column" in error.detail
    assert "'a', 'b', 'c'" in error.detail
    assert _loc(error) == ["label_column"]


def test_csv_missing_label_column_with_many_columns() -> None:
    header = ",".join(f"column{i}" for i in range(500))
    error = _refused(_csv(header, ",".join("1" * 500)))
    assert "and 490 more" in error.detail
    assert "column499" not in error.detail


def test_csv_semicolons_get_a_hint() -> None:
    error = _refused(_csv("a;b;label", "1;2;x"))
    assert "comma-separated" in error.detail


def test_csv_no_feature_columns() -> None:
    error = _refused(_csv("label", "x", "y"))
    assert "no feature columns" in error.detail


def test_csv_duplicate_and_unnamed_columns() -> None:
    assert "'a' twice (columns 1 and 3)" in _refused(_csv("a,label,a", "1,x,2")).detail
    error = _refused(_csv(",a,label", "0,1,x"))
    assert "Column 1 has no name" in error.detail
    assert _loc(error) == ["file", 1]


def test_csv_single_class() -> None:
    error = _refused(_csv("a,label", "1,x", "2,x"))
    assert "at least 2 classes" in error.detail


def test_csv_empty_label() -> None:
    error = _refused(_csv("a,label", "1,x", "2, ", "3,y"))
    assert "Line 3, column 'label': the label is empty" in error.detail


@pytest.mark.parametrize(
    ("cell", "what"), [("cat", "'cat', which is not a number"), ("", "is empty")]
)
def test_csv_regression_labels_must_be_numbers(cell: str, what: str) -> None:
    error = _refused(_csv("a,label", "1,2", f"2,{cell}"), task="regression")
    assert error.detail.startswith("Line 3, column 'label'")
    assert what in error.detail


def test_csv_regression_labels_must_be_finite() -> None:
    error = _refused(_csv("a,y", "1,2", "2,nan"), task="regression", label_column="y")
    assert "Line 3, column 'y': the value is NaN" in error.detail


def test_csv_not_utf8_names_the_line() -> None:
    error = _refused("a,label\n1,caf\u00e9\n".encode("latin-1"))
    assert "not UTF-8" in error.detail
    assert "line 2" in error.detail
    assert _loc(error) == ["file", 2]


def test_csv_oversized_field() -> None:
    error = _refused(b'a,label\n"' + b"1" * 200_000 + b'",x\n')
    assert "Line 2 is not valid CSV" in error.detail


def test_csv_row_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing.limits, "MAX_ROWS", 3)
    assert parse_csv(_csv("a,label", "1,x", "2,y", "3,x"), task="classification").rows == 3
    error = _refused(_csv("a,label", "1,x", "2,y", "3,x", "4,y"))
    assert "more than 3 rows" in error.detail


def test_csv_feature_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing.limits, "MAX_FEATURES", 2)
    error = _refused(_csv("a,b,c,label", "1,2,3,x"))
    assert "more than 2 feature columns" in error.detail


def test_csv_class_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing.limits, "MAX_CLASSES", 2)
    error = _refused(_csv("a,label", "1,x", "2,y", "3,z"))
    assert "3 distinct classes" in error.detail


def test_csv_input_shape_must_hold_the_features() -> None:
    error = _refused(_csv("a,b,c,label", "1,2,3,x"), input_shape=[2, 2])
    assert "input_shape [2, 2] holds 4 values per row but the file has 3 feature columns" in (
        error.detail
    )
    assert _loc(error) == ["input_shape"]


@pytest.mark.parametrize(
    "shape", [[], [0], [4097], [1, 1, 1, 1, 1], [-1, 3], [True, 3], ["3"], [1.5]]
)
def test_input_shape_bounds(shape: list[Any]) -> None:
    error = _refused(_csv("a,b,c,label", "1,2,3,x"), input_shape=shape)
    assert "input_shape must list 1 to 4 sizes, each from 1 to 4096" in error.detail
    assert _loc(error) == ["input_shape"]
    npz = _npz(X=np.zeros((2, 3)), y=np.array([0, 1]))
    assert _loc(_refused_npz(npz, input_shape=shape)) == ["input_shape"]


# --------------------------------------------------------------------------- NPZ, accepted


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(compressed: bool) -> None:
    x = np.random.default_rng(0).standard_normal((6, 3))
    ds = parse_npz(
        _npz(X=x, y=np.array([5, 2, 5, 9, 2, 2]), compressed=compressed), task="classification"
    )
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.x.dtype == np.float32
    assert ds.classes == [2, 5, 9]
    assert all(type(label) is int for label in ds.classes)
    assert ds.y.tolist() == [1, 0, 1, 2, 0, 0]


def test_npz_string_labels_are_sorted_names() -> None:
    ds = parse_npz(
        _npz(X=np.zeros((3, 2)), y=np.array(["dog", "cat", "dog"])), task="classification"
    )
    assert ds.classes == ["cat", "dog"]
    assert ds.y.tolist() == [1, 0, 1]


def test_npz_keeps_the_sample_shape_and_accepts_integers() -> None:
    x = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    ds = parse_npz(_npz(X=x, y=np.array([0, 1])), task="classification")
    assert ds.input_shape == (8, 8)
    np.testing.assert_array_equal(ds.x, x)


def test_npz_input_shape_reshapes() -> None:
    ds = parse_npz(
        _npz(X=np.zeros((2, 64)), y=np.array([0, 1])), task="classification", input_shape=(1, 8, 8)
    )
    assert ds.input_shape == (1, 8, 8)
    error = _refused_npz(_npz(X=np.zeros((2, 63)), y=np.array([0, 1])), input_shape=(1, 8, 8))
    assert "64 values per row but the file has 63" in error.detail
    assert _loc(error) == ["input_shape"]


def test_npz_regression() -> None:
    ds = parse_npz(_npz(X=np.zeros((2, 1)), y=np.array([1, 2.5])), task="regression")
    assert ds.y.dtype == np.float32
    assert ds.y.tolist() == [1.0, 2.5]
    assert ds.classes is None


def test_npz_fortran_order_and_extra_arrays() -> None:
    x = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    ds = parse_npz(_npz(X=x, y=np.array([0, 1]), notes=np.array([1])), task="classification")
    assert ds.x.flags.c_contiguous
    np.testing.assert_array_equal(ds.x, x)


# --------------------------------------------------------------------------- NPZ, refused


def test_npz_object_arrays_are_refused_without_unpickling() -> None:
    x = np.empty((2, 1), dtype=object)
    x[:] = [[1], [2]]
    error = _refused_npz(_npz(X=x, y=np.array([0, 1])))
    assert "object array" in error.detail
    assert _loc(error) == ["file", "X"]
    error = _refused_npz(_npz(X=np.zeros((2, 1)), y=np.array(["a", None], dtype=object)))
    assert "object array" in error.detail
    assert _loc(error) == ["file", "y"]


@pytest.mark.parametrize("missing", ["X", "y"])
def test_npz_needs_x_and_y(missing: str) -> None:
    arrays: dict[str, Any] = {"X": np.zeros((2, 1)), "y": np.array([0, 1])}
    del arrays[missing]
    error = _refused_npz(_npz(**arrays))
    assert f"no array named {missing}" in error.detail
    assert _loc(error) == ["file", missing]


@pytest.mark.parametrize(
    ("x", "what"),
    [
        (np.zeros((2, 2), dtype=bool), "booleans"),
        (np.zeros((2, 2), dtype=complex), "complex numbers"),
        (np.array([["a"], ["b"]]), "strings"),
        (np.zeros(2), "needs a row axis"),
        (np.zeros((2, 0)), "hold no values"),
        (np.zeros((2, 1, 1, 1, 1, 1)), "5 axes after the row axis"),
    ],
)
def test_npz_bad_x(x: npt.NDArray[Any], what: str) -> None:
    error = _refused_npz(_npz(X=x, y=np.array([0, 1])))
    assert what in error.detail
    assert _loc(error) == ["file", "X"]


def test_npz_no_rows() -> None:
    error = _refused_npz(_npz(X=np.zeros((0, 2)), y=np.array([], dtype=np.int64)))
    assert "no rows" in error.detail


def test_npz_lengths_must_agree() -> None:
    error = _refused_npz(_npz(X=np.zeros((5, 2)), y=np.array([0, 1, 0])))
    assert error.detail == "X has 5 rows but y has 3 labels."
    assert _loc(error) == ["file", "y"]


def test_npz_y_must_be_one_dimensional() -> None:
    error = _refused_npz(_npz(X=np.zeros((2, 2)), y=np.array([[0], [1]])))
    assert "y.ravel()" in error.detail


def test_npz_non_finite_x_names_the_first_bad_row() -> None:
    x = np.zeros((5, 2, 2))
    x[3, 1, 0] = np.inf
    x[4, 0, 0] = np.nan
    error = _refused_npz(_npz(X=x, y=np.arange(5) % 2))
    assert error.detail.startswith("X[3] holds a value that is infinite")
    assert _loc(error) == ["file", "X", 3]
    x = np.full((2, 1), 1e300)
    assert "beyond the float32 range" in _refused_npz(_npz(X=x, y=np.array([0, 1]))).detail


@pytest.mark.parametrize(
    ("y", "task", "what"),
    [
        (np.array([0.0, 1.0]), "classification", "y.astype(int)"),
        (np.array([True, False]), "classification", "booleans"),
        (np.array([b"a", b"b"]), "classification", "byte strings"),
        (np.array(["a", "b"]), "regression", "strings"),
    ],
)
def test_npz_bad_labels(y: npt.NDArray[Any], task: str, what: str) -> None:
    error = _refused_npz(_npz(X=np.zeros((2, 1)), y=y), task=task)
    assert what in error.detail
    assert _loc(error) == ["file", "y"]


def test_npz_regression_labels_must_be_finite() -> None:
    error = _refused_npz(_npz(X=np.zeros((3, 1)), y=np.array([1, 2, np.nan])), task="regression")
    assert error.detail.startswith("y[2] holds a value that is NaN")
    assert _loc(error) == ["file", "y", 2]


def test_npz_single_class_and_empty_names() -> None:
    assert "at least 2 classes" in _refused_npz(_npz(X=np.zeros((2, 1)), y=np.array([4, 4]))).detail
    error = _refused_npz(_npz(X=np.zeros((2, 1)), y=np.array(["a", ""])))
    assert "y[1] is an empty string" in error.detail


def test_npz_row_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing.limits, "MAX_ROWS", 2)
    error = _refused_npz(_npz(X=np.zeros((3, 1)), y=np.array([0, 1, 0])))
    assert "3 rows; at most 2" in error.detail


def test_npz_feature_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing.limits, "MAX_FEATURES", 4)
    error = _refused_npz(_npz(X=np.zeros((2, 5)), y=np.array([0, 1])))
    assert "5 values per row; at most 4" in error.detail


def test_npz_unpacked_size_cap_is_413() -> None:
    data = _npz(X=np.zeros((1000, 100)), y=np.arange(1000) % 2, compressed=True)
    assert len(data) < 10_000
    with pytest.raises(PayloadTooLarge) as exc:
        parse_npz(data, task="classification", max_bytes=100_000)
    assert exc.value.status == 413
    assert "unpacks to" in exc.value.detail


def test_npz_header_claiming_more_data_than_stored() -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**4)}
    )
    data = _zip({"X.npy": header.getvalue() + b"\0" * 64, "y.npy": _npy(np.array([0, 1]))})
    error = _refused_npz(data)
    assert "claims" in error.detail
    assert _loc(error) == ["file", "X"]


def test_npz_truncated_member() -> None:
    data = _zip({"X.npy": _npy(np.zeros((4, 4)))[:-8], "y.npy": _npy(np.arange(4) % 2)})
    assert "not a readable NPZ" in _refused_npz(data).detail


def test_npz_member_that_is_not_npy() -> None:
    data = _zip({"X.npy": b"hello", "y.npy": _npy(np.array([0, 1]))})
    error = _refused_npz(data)
    assert "X in the archive is not a .npy array" in error.detail


def test_npz_corrupt_archive() -> None:
    data = _npz(X=np.zeros((2, 1)), y=np.array([0, 1]))
    error = _refused_npz(data[: len(data) // 2])
    assert "not a readable NPZ" in error.detail
    assert _loc(error) == ["file"]


# --------------------------------------------------------------------------- parse_upload


def test_upload_detects_npz_by_its_bytes() -> None:
    data = _npz(X=np.zeros((2, 1)), y=np.array([0, 1]))
    ds = parse_upload(data, filename="data.csv", content_type="text/csv", task="classification")
    assert ds.rows == 2


def test_upload_parses_text_as_csv() -> None:
    ds = parse_upload(
        IRIS_LIKE, filename=None, content_type="application/octet-stream", task="classification"
    )
    assert ds.rows == 4


def test_upload_passes_csv_options_through() -> None:
    ds = parse_upload(
        _csv("p0,p1,p2,p3,y", "1,2,3,4,0.5", "1,2,3,4,1.5"),
        filename="d.csv",
        content_type="text/csv; charset=utf-8",
        task="regression",
        label_column="y",
        input_shape=[2, 2],
    )
    assert ds.input_shape == (2, 2)
    assert ds.y.tolist() == [0.5, 1.5]


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "what"),
    [
        (_npy(np.zeros((2, 2))), "x.npy", None, "single .npy array"),
        (b"\x1f\x8b\x08\x00rest", "d.csv.gz", "application/gzip", "gzip"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a.png", "image/png", "image data"),
        (b'{"X": [[1]], "y": [0]}', "d.json", None, "JSON"),
        (b"a,label\n1,x\n", "d.txt", "application/json", "JSON"),
        ("a,label\n1,x\n".encode("utf-16"), "d.csv", "text/csv", "binary data"),
        (_zip({"[Content_Types].xml": b"<xml/>"}), "book.xlsx", None, "not an NPZ"),
    ],
)
def test_upload_other_formats_are_415(
    data: bytes, filename: str, content_type: str | None, what: str
) -> None:
    with pytest.raises(UnsupportedMediaType) as exc:
        parse_upload(data, filename=filename, content_type=content_type, task="classification")
    assert exc.value.status == 415
    assert what in exc.value.detail
    assert _loc(exc.value) == ["file"]


def test_upload_latin1_csv_is_422_with_its_line() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_upload(
            "a,label\n1,x\n2,caf\u00e9\n".encode("latin-1"),
            filename="d.csv",
            content_type="text/csv",
            task="classification",
        )
    assert "line 3" in exc.value.detail


def test_upload_zip_bomb_is_413() -> None:
    data = _npz(X=np.zeros((1000, 100)), y=np.arange(1000) % 2, compressed=True)
    with pytest.raises(PayloadTooLarge):
        parse_upload(
            data, filename="d.npz", content_type=None, task="classification", max_bytes=100_000
        )
