"""NPZ uploads (``np.savez``) to :class:`DatasetArrays`: ``X`` [rows, ...] and ``y`` [rows].

Refusals are located at ``["file", "X" | "y"]`` or ``["file", "X" | "y", <row>]``, rows
counted from 0 as numpy indexes them. Headers are checked before any data is read, and
nothing is ever unpickled.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from aiaas.datasets.arrays import ClassLabel, DatasetArrays
from aiaas.datasets.parsing import limits
from aiaas.datasets.parsing.limits import (
    check_class_count,
    check_input_shape,
    counted,
    non_finite,
    shape_mismatch,
    to_float32,
)
from aiaas.errors import PayloadTooLarge, UnsupportedMediaType, invalid
from aiaas.ml.task import Task
from aiaas.ml.tensors.numbers import NUMBER_KINDS, REFUSED_KINDS


def parse_npz(
    data: bytes,
    *,
    task: Task,
    input_shape: Sequence[int] | None = None,
    max_bytes: int = limits.MAX_NPZ_BYTES,
) -> DatasetArrays:
    """Parse an NPZ archive (``np.savez``) holding ``X`` [rows, ...] and ``y`` [rows].

    Each array's header is read and checked before its data: ``np.load`` allocates whatever a
    header claims, so a small archive could otherwise ask for terabytes. Object arrays are
    refused from the header alone; nothing is ever unpickled.
    """
    shape = check_input_shape(input_shape)
    x_raw, y_raw = _read_npz(data, task, max_bytes)
    rows = x_raw.shape[0]
    if shape is not None and math.prod(shape) != math.prod(x_raw.shape[1:]):
        raise shape_mismatch(shape, math.prod(x_raw.shape[1:]), "values in each row of X")

    x = _npz_float32(x_raw, "X")
    del x_raw
    x = x.reshape((rows, *shape)) if shape is not None else x
    if task == "regression":
        return DatasetArrays(x=x, y=_npz_float32(y_raw, "y"), task=task, classes=None)
    y, classes = _npz_classes(y_raw)
    return DatasetArrays(x=x, y=y, task=task, classes=classes)


# --------------------------------------------------------------------------- reading


def _read_npz(data: bytes, task: Task, max_bytes: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            limit = min(
                max_bytes, max(limits.NPZ_EXPANSION * len(data), limits.NPZ_EXPANSION_FLOOR)
            )
            if total > limit:
                raise PayloadTooLarge(
                    f"The NPZ archive unpacks to {total:,} bytes; at most {limit:,} are "
                    f"accepted ({limits.NPZ_EXPANSION} times the upload's size, at most "
                    f"{max_bytes:,}).",
                    errors=[{"loc": ["file"], "msg": "the archive unpacks to too many bytes"}],
                )
            names = {member.filename for member in members}
            if not any(name.endswith(".npy") for name in names):
                raise UnsupportedMediaType(
                    "The upload is a zip archive but not an NPZ: it holds no .npy arrays. "
                    "Save one with np.savez(f, X=..., y=...), or upload a CSV file.",
                    errors=[{"loc": ["file"], "msg": "a zip archive without .npy arrays"}],
                )
            x_info, y_info = (_member(archive, names, key) for key in ("X", "y"))
            x_shape, x_dtype = _npy_header(archive, x_info, "X")
            y_shape, y_dtype = _npy_header(archive, y_info, "y")
            _check_x(x_shape, x_dtype)
            _check_y(y_shape, y_dtype, x_shape[0], task)
            x = _read_array(archive, x_info)
            y = _read_array(archive, y_info)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        ValueError,
    ) as exc:
        raise invalid(
            "The upload is not a readable NPZ archive (a zip of .npy arrays).", "file"
        ) from exc
    return x, y


def _member(archive: zipfile.ZipFile, names: set[str], key: str) -> zipfile.ZipInfo:
    # The same lookup as np.load's NpzFile: the bare name first, then with .npy.
    for name in (key, f"{key}.npy"):
        if name in names:
            info = archive.getinfo(name)
            if info.flag_bits & 0x1:
                raise invalid(f"The array {key} is encrypted in the archive.", "file", key)
            return info
    raise invalid(
        f"The NPZ archive has no array named {key}; save it with np.savez(f, X=..., y=...).",
        "file",
        key,
    )


def _npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    except ValueError as exc:
        raise invalid(f"{key} in the archive is not a .npy array.", "file", key) from exc
    if dtype.hasobject:
        raise invalid(
            f"{key} is an object array; only numbers (and string labels in y) are accepted, "
            "since object arrays would have to be unpickled.",
            "file",
            key,
        )
    need = math.prod(shape) * dtype.itemsize
    if need > info.file_size:
        raise invalid(
            f"{key} claims {need:,} bytes of data but the archive holds {info.file_size:,}.",
            "file",
            key,
        )
    return shape, dtype


def _check_x(shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if dtype.kind not in NUMBER_KINDS:
        what = REFUSED_KINDS.get(dtype.kind, "values that are not numbers")
        raise invalid(
            f"X holds {what} (dtype {dtype}); it must hold integers or floats.", "file", "X"
        )
    if len(shape) < 2:
        raise invalid(
            f"X has shape {list(shape)}; it needs a row axis and at least one feature axis "
            "(X.reshape(-1, 1) for one feature per row).",
            "file",
            "X",
        )
    if len(shape) - 1 > limits.MAX_DIMS:
        raise invalid(
            f"X has {len(shape) - 1} axes after the row axis; at most {limits.MAX_DIMS} are "
            "accepted.",
            "file",
            "X",
        )
    if shape[0] == 0:
        raise invalid("X has no rows.", "file", "X")
    if shape[0] > limits.MAX_ROWS:
        raise invalid(
            f"X has {shape[0]:,} rows; at most {limits.MAX_ROWS:,} are accepted.", "file", "X"
        )
    features = math.prod(shape[1:])
    if features == 0:
        raise invalid(f"X has shape {list(shape)}: its rows hold no values.", "file", "X")
    if features > limits.MAX_FEATURES:
        raise invalid(
            f"X has {features:,} values per row; at most {limits.MAX_FEATURES:,} are accepted.",
            "file",
            "X",
        )


def _check_y(shape: tuple[int, ...], dtype: np.dtype[Any], rows: int, task: Task) -> None:
    if len(shape) != 1:
        raise invalid(
            f"y has shape {list(shape)}; it must be one label per row (y.ravel()).", "file", "y"
        )
    if shape[0] != rows:
        raise invalid(
            f"X has {counted(rows, 'row')} but y has {counted(shape[0], 'label')}.", "file", "y"
        )
    allowed = "iuU" if task == "classification" else NUMBER_KINDS
    if dtype.kind in allowed:
        return
    if task == "classification" and dtype.kind == "f":
        what = "floats; classification labels must be integers or strings (y.astype(int))"
    else:
        what = REFUSED_KINDS.get(dtype.kind, "values that are not labels")
        need = "integers or strings" if task == "classification" else "numbers"
        what = f"{what}; {task} labels must be {need}"
    raise invalid(f"y holds {what} (dtype {dtype}).", "file", "y")


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> npt.NDArray[Any]:
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _npz_float32(values: npt.NDArray[Any], key: str) -> npt.NDArray[np.float32]:
    if values.dtype.kind != "f":
        # Even the largest int64 is far inside the float32 range.
        return np.ascontiguousarray(values, dtype=np.float32)
    flat = values.reshape(values.shape[0], -1)
    result, bad = to_float32(flat)
    if bad is None:
        return result.reshape(values.shape)
    row = bad[0]
    value = non_finite(float(flat[bad]))
    where = f"{key}[{row}]"
    raise invalid(
        f"{where} holds a value that is {value}; every value must be a finite number.",
        "file",
        key,
        row,
    )


def _npz_classes(labels: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], list[ClassLabel]]:
    if labels.dtype.kind == "U":
        empty = labels == ""
        if empty.any():
            row = int(np.argmax(empty))
            raise invalid(
                f"y[{row}] is an empty string; every label needs a name.", "file", "y", row
            )
    distinct, inverse = np.unique(labels, return_inverse=True)
    check_class_count(len(distinct))
    classes: list[ClassLabel] = distinct.tolist()
    return inverse.reshape(-1).astype(np.int64), classes
