"""Uploaded datasets, CSV or NPZ, to :class:`DatasetArrays`, refusing anything malformed.

Every refusal is an :class:`~aiaas.errors.AppError` (:class:`InvalidInput` unless it says
otherwise) raised before anything is stored, with one ``errors`` item located at:

- ``["file"]``: the upload as a whole;
- ``["file", <line>]`` or ``["file", <line>, <column>]``: a CSV line, counted from 1 with the
  header included (what an editor shows), and a column by its header name;
- ``["file", "X" | "y"]`` or ``["file", "X" | "y", <row>]``: an NPZ array and a row, from 0;
- ``["label_column"]`` and ``["input_shape"]``: the upload's parameters.

Cell values and names are cut short in messages so that a hostile upload cannot make the
error document large.

CSV cells are read with the ``csv`` module and converted a whole matrix at a time; only when
that fails is the file walked again to find the first bad cell and its line, so good uploads
never pay for precise errors.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from aiaas.datasets.arrays import ClassLabel, DatasetArrays
from aiaas.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType, invalid
from aiaas.ml.task import Task

MAX_ROWS: Final = 1_000_000
MAX_FEATURES: Final = 1_000_000
# A classification upload with more distinct labels than this is almost surely a regression
# target or an id column, and the model's output layer would be absurd anyway.
MAX_CLASSES: Final = 10_000
MAX_NPZ_BYTES: Final = 512 * 1024 * 1024
MAX_DIMS: Final = 4
MAX_DIM: Final = 4096

_ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC: Final = b"\x93NUMPY"
_GZIP_MAGIC: Final = b"\x1f\x8b"
# Up to 18 digits always fits int64; longer "integers" are kept as names instead.
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,18}")
# Cells parsed at once: their strings weigh ~60 bytes each, so a chunk stays near 4 MB.
_CELLS_PER_CHUNK: Final = 65_536
# An NPZ may unpack to at most this many times its own size (and MAX_NPZ_BYTES in all): a
# small compressed archive must not become hundreds of MB in memory.
NPZ_EXPANSION: Final = 16
NPZ_EXPANSION_FLOOR: Final = 8 * 1024 * 1024
_CELL_CHARS: Final = 20
_NAME_CHARS: Final = 40
_LISTED_COLUMNS: Final = 10

_OTHER_MEDIA_TYPES: Final = {
    "application/json": "JSON",
    "application/x-ndjson": "JSON lines",
    "application/xml": "XML",
    "text/xml": "XML",
    "text/html": "HTML",
    "application/pdf": "PDF",
    "application/vnd.apache.parquet": "Parquet",
    "application/x-parquet": "Parquet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "an Excel workbook",
    "application/vnd.oasis.opendocument.spreadsheet": "a spreadsheet",
}
_OTHER_SUFFIXES: Final = {
    ".json": "JSON",
    ".jsonl": "JSON lines",
    ".ndjson": "JSON lines",
    ".xlsx": "an Excel workbook",
    ".xls": "an Excel workbook",
    ".ods": "a spreadsheet",
    ".parquet": "Parquet",
    ".pkl": "a pickle",
    ".pickle": "a pickle",
}
_REFUSED_KINDS: Final = {
    "b": "booleans",
    "c": "complex numbers",
    "O": "Python objects",
    "U": "strings",
    "S": "byte strings",
    "V": "raw or structured records",
    "M": "datetimes",
    "m": "timedeltas",
}


# --------------------------------------------------------------------------- public API


def parse_upload(
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    task: Task,
    label_column: str = "label",
    input_shape: Sequence[int] | None = None,
    max_bytes: int = MAX_NPZ_BYTES,
) -> DatasetArrays:
    """Parse an upload as NPZ or CSV, judging by its bytes before its name or media type.

    Anything that is neither (a lone ``.npy``, gzip, JSON, spreadsheets, binary data) gets
    :class:`UnsupportedMediaType`.
    """
    if data.startswith(_ZIP_MAGICS):
        return parse_npz(data, task=task, input_shape=input_shape, max_bytes=max_bytes)
    what = _other_format(data, filename, content_type)
    if what is not None:
        raise UnsupportedMediaType(
            f"The upload{_described(filename, content_type)} is {what}; upload a CSV file "
            "(UTF-8, comma-separated, with a header row) or an NPZ archive holding X and y.",
            errors=[{"loc": ["file"], "msg": f"{what} is not accepted"}],
        )
    return parse_csv(data, task=task, label_column=label_column, input_shape=input_shape)


def parse_csv(
    data: bytes,
    *,
    task: Task,
    label_column: str = "label",
    input_shape: Sequence[int] | None = None,
) -> DatasetArrays:
    """Parse UTF-8, comma-separated text with a header row; every other column is a feature."""
    shape = _check_input_shape(input_shape)
    text = _decode(data)
    reader, header_line, header = _read_header(text)
    names = _column_names(header, header_line)
    label = label_column.strip()
    if label not in names:
        raise _missing_label_column(label, names)
    label_index = names.index(label)
    feature_names = names[:label_index] + names[label_index + 1 :]
    if not feature_names:
        raise invalid(
            f"The file has no feature columns: its only column is {_name(label)}.", "file"
        )
    if shape is not None and math.prod(shape) != len(feature_names):
        raise _shape_mismatch(shape, len(feature_names), "feature columns")
    # Rows are converted a chunk at a time: lists of cell strings weigh dozens of times the
    # float32 arrays made from them, so only one chunk of them lives at once.
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[npt.NDArray[Any]] = []
    seen = 0
    for rows in _data_chunks(reader, len(names)):
        _check_widths(text, rows, len(names), offset=seen)
        cells = np.array(rows, dtype=object)
        del rows
        features = _csv_numbers(text, np.delete(cells, label_index, axis=1), feature_names, seen)
        xs.append(_csv_float32(text, features, feature_names, seen))
        del features
        labels = cells[:, label_index]
        if task == "regression":
            targets = _csv_numbers(text, labels[:, None], [label], seen)
            ys.append(_csv_float32(text, targets, [label], seen)[:, 0])
        else:
            ys.append(labels.astype(np.str_))
        del cells, labels
        seen += len(xs[-1])
        if seen > MAX_ROWS:
            raise invalid(f"The file has more than {MAX_ROWS:,} rows.", "file")
    if not seen:
        raise invalid("The file has a header but no data rows.", "file")
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    del xs
    if shape is not None:
        x = x.reshape((x.shape[0], *shape))
    column = ys[0] if len(ys) == 1 else np.concatenate(ys)
    if task == "regression":
        return DatasetArrays(x=x, y=column, task=task, classes=None)
    indices, classes = _csv_classes(text, column, label)
    return DatasetArrays(x=x, y=indices, task=task, classes=classes)


def parse_npz(
    data: bytes,
    *,
    task: Task,
    input_shape: Sequence[int] | None = None,
    max_bytes: int = MAX_NPZ_BYTES,
) -> DatasetArrays:
    """Parse an NPZ archive (``np.savez``) holding ``X`` [rows, ...] and ``y`` [rows].

    Each array's header is read and checked before its data: ``np.load`` allocates whatever a
    header claims, so a small archive could otherwise ask for terabytes. Object arrays are
    refused from the header alone; nothing is ever unpickled.
    """
    shape = _check_input_shape(input_shape)
    x_raw, y_raw = _read_npz(data, task, max_bytes)
    rows = x_raw.shape[0]
    if shape is not None and math.prod(shape) != math.prod(x_raw.shape[1:]):
        raise _shape_mismatch(shape, math.prod(x_raw.shape[1:]), "values in each row of X")

    x = _npz_float32(x_raw, "X")
    del x_raw
    x = x.reshape((rows, *shape)) if shape is not None else x
    if task == "regression":
        return DatasetArrays(x=x, y=_npz_float32(y_raw, "y"), task=task, classes=None)
    y, classes = _npz_classes(y_raw)
    return DatasetArrays(x=x, y=y, task=task, classes=classes)


# --------------------------------------------------------------------------- CSV


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise invalid(
            f"The file is not UTF-8 text: line {line} holds the byte {data[exc.start]:#04x}. "
            "Save it as UTF-8.",
            "file",
            line,
        ) from exc


def _lines(text: str) -> Iterator[str]:
    """The text's lines with their endings, one at a time: io.StringIO would first copy the
    whole text into a buffer of four bytes a character."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def _read_header(text: str) -> tuple[Iterator[list[str]], int, list[str]]:
    """A reader positioned after the header, the header's line and the header."""
    # Lines keep their endings, as the csv docs ask: line breaks inside quoted cells survive.
    reader = csv.reader(_lines(text))
    try:
        header = next((row for row in reader if _holds_data(row)), None)
    except csv.Error as exc:
        line = reader.line_num
        raise invalid(f"Line {line} is not valid CSV: {exc}.", "file", line) from exc
    if header is None:
        raise invalid("The file is empty.", "file")
    return reader, reader.line_num, header


def _data_chunks(reader: Any, width: int) -> Iterator[list[list[str]]]:
    """The non-blank data rows, about ``_CELLS_PER_CHUNK`` cells at a time."""
    rows_per_chunk = max(1, _CELLS_PER_CHUNK // max(width, 1))
    try:
        while chunk := list(islice(reader, rows_per_chunk)):
            rows = [row for row in chunk if _holds_data(row)]
            del chunk
            if rows:
                yield rows
    except csv.Error as exc:
        line = reader.line_num
        raise invalid(f"Line {line} is not valid CSV: {exc}.", "file", line) from exc


def _column_names(header: list[str], line: int) -> list[str]:
    if len(header) - 1 > MAX_FEATURES:
        raise invalid(f"The header has more than {MAX_FEATURES:,} feature columns.", "file", line)
    names = [cell.strip() for cell in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, 1):
        if not name:
            raise invalid(
                f"Column {position} has no name in the header; every column needs one.",
                "file",
                line,
            )
        if name in seen:
            raise invalid(
                f"The header names column {_name(name)} twice (columns {seen[name]} and "
                f"{position}).",
                "file",
                line,
                _clip(name),
            )
        seen[name] = position
    return names


def _missing_label_column(label: str, names: list[str]) -> InvalidInput:
    listed = ", ".join(_name(name) for name in names[:_LISTED_COLUMNS])
    if len(names) > _LISTED_COLUMNS:
        listed += f" and {len(names) - _LISTED_COLUMNS} more"
    hint = " Set label_column to the column that holds the labels."
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        hint = " Only comma-separated files are accepted."
    return invalid(
        f"The file has no {_name(label)} column; its columns are {listed}.{hint}", "label_column"
    )


def _check_widths(text: str, rows: list[list[str]], width: int, *, offset: int) -> None:
    if set(map(len, rows)) == {width}:
        return
    row = next(i for i, cells in enumerate(rows) if len(cells) != width)
    line = _line_of(text, offset + row)
    raise invalid(
        f"Line {line} has {_count(len(rows[row]), 'cell')} but the header has "
        f"{_count(width, 'column')}.",
        "file",
        line,
    )


def _csv_numbers(
    text: str, cells: npt.NDArray[np.object_], names: list[str], offset: int
) -> npt.NDArray[np.float64]:
    try:
        return cells.astype(np.float64)
    except ValueError:
        pass
    row, column = _first_non_number(cells)
    line = _line_of(text, offset + row)
    value = str(cells[row, column])
    problem = "is empty" if not value.strip() else f"holds {_show(value)}, which is not a number"
    raise invalid(
        f"Line {line}, column {_name(names[column])}: the cell {problem}.",
        "file",
        line,
        _clip(names[column]),
    )


def _first_non_number(cells: npt.NDArray[np.object_]) -> tuple[int, int]:
    """The first cell, in reading order, that ``float`` refuses."""
    best: tuple[int, int] | None = None
    for column in range(cells.shape[1]):
        values = cells[:, column]
        try:
            values.astype(np.float64)
            continue
        except ValueError:
            pass
        for row, value in enumerate(values.tolist()):
            if best is not None and row >= best[0]:
                break
            try:
                float(value)
            except ValueError:
                best = (row, column)
                break
    # numpy converts with float() itself, so some cell was found; the fallback only keeps the
    # error an error should they ever disagree.
    return best if best is not None else (0, 0)


def _csv_float32(
    text: str, values: npt.NDArray[np.float64], names: list[str], offset: int
) -> npt.NDArray[np.float32]:
    result, bad = _float32(values)
    if bad is None:
        return result
    row, column = bad
    line = _line_of(text, offset + row)
    raise invalid(
        f"Line {line}, column {_name(names[column])}: the value is "
        f"{_non_finite(float(values[row, column]))}; every value must be a finite number.",
        "file",
        line,
        _clip(names[column]),
    )


def _csv_classes(
    text: str, labels: npt.NDArray[np.str_], column: str
) -> tuple[npt.NDArray[np.int64], list[ClassLabel]]:
    stripped = np.char.strip(labels)
    empty = stripped == ""
    if empty.any():
        line = _line_of(text, int(np.argmax(empty)))
        raise invalid(
            f"Line {line}, column {_name(column)}: the label is empty.", "file", line, _clip(column)
        )
    distinct, inverse = np.unique(stripped, return_inverse=True)
    names: list[str] = distinct.tolist()
    _check_class_count(len(names))
    if not all(_INTEGER.fullmatch(name) for name in names):
        return inverse.reshape(-1).astype(np.int64), list(names)
    # "7" and "07" are the same class.
    values = [int(name) for name in names]
    classes = sorted(set(values))
    _check_class_count(len(classes))
    position = {value: i for i, value in enumerate(classes)}
    lookup = np.array([position[value] for value in values], dtype=np.int64)
    return lookup[inverse.reshape(-1)], list(classes)


def _data_lines(text: str) -> Iterator[int]:
    """The line each non-blank data row starts on, in order."""
    reader = csv.reader(io.StringIO(text, newline=""))
    before = 0
    header_seen = False
    for row in reader:
        start, before = before + 1, reader.line_num
        if not _holds_data(row):
            continue
        if header_seen:
            yield start
        header_seen = True


def _holds_data(row: list[str]) -> bool:
    # Blank and whitespace-only lines are skipped: editors leave them at the end of files.
    return len(row) > 1 or (len(row) == 1 and bool(row[0].strip()))


def _line_of(text: str, row: int) -> int:
    return next(islice(_data_lines(text), row, None))


# --------------------------------------------------------------------------- NPZ


def _read_npz(data: bytes, task: Task, max_bytes: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            limit = min(max_bytes, max(NPZ_EXPANSION * len(data), NPZ_EXPANSION_FLOOR))
            if total > limit:
                raise PayloadTooLarge(
                    f"The NPZ archive unpacks to {total:,} bytes; at most {limit:,} are "
                    f"accepted ({NPZ_EXPANSION} times the upload's size, at most "
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
    if dtype.kind not in "iuf":
        what = _REFUSED_KINDS.get(dtype.kind, "values that are not numbers")
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
    if len(shape) - 1 > MAX_DIMS:
        raise invalid(
            f"X has {len(shape) - 1} axes after the row axis; at most {MAX_DIMS} are accepted.",
            "file",
            "X",
        )
    if shape[0] == 0:
        raise invalid("X has no rows.", "file", "X")
    if shape[0] > MAX_ROWS:
        raise invalid(f"X has {shape[0]:,} rows; at most {MAX_ROWS:,} are accepted.", "file", "X")
    features = math.prod(shape[1:])
    if features == 0:
        raise invalid(f"X has shape {list(shape)}: its rows hold no values.", "file", "X")
    if features > MAX_FEATURES:
        raise invalid(
            f"X has {features:,} values per row; at most {MAX_FEATURES:,} are accepted.",
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
            f"X has {_count(rows, 'row')} but y has {_count(shape[0], 'label')}.", "file", "y"
        )
    allowed = "iuU" if task == "classification" else "iuf"
    if dtype.kind in allowed:
        return
    if task == "classification" and dtype.kind == "f":
        what = "floats; classification labels must be integers or strings (y.astype(int))"
    else:
        what = _REFUSED_KINDS.get(dtype.kind, "values that are not labels")
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
    result, bad = _float32(flat)
    if bad is None:
        return result.reshape(values.shape)
    row = bad[0]
    value = _non_finite(float(flat[bad]))
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
    _check_class_count(len(distinct))
    classes: list[ClassLabel] = distinct.tolist()
    return inverse.reshape(-1).astype(np.int64), classes


# --------------------------------------------------------------------------- shared


def _check_input_shape(input_shape: Sequence[int] | None) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    dims = tuple(input_shape)
    valid = 1 <= len(dims) <= MAX_DIMS and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and 1 <= d <= MAX_DIM
        for d in dims
    )
    if not valid:
        shown = ", ".join(_show(str(d)) if not isinstance(d, int) else str(d) for d in dims[:8])
        raise invalid(
            f"input_shape must list 1 to {MAX_DIMS} sizes, each from 1 to {MAX_DIM}; got "
            f"[{shown}{', ...' if len(dims) > 8 else ''}].",
            "input_shape",
        )
    return tuple(int(d) for d in dims)


def _shape_mismatch(shape: tuple[int, ...], features: int, what: str) -> InvalidInput:
    return invalid(
        f"input_shape {list(shape)} holds {math.prod(shape):,} values per row but the file has "
        f"{features:,} {what}.",
        "input_shape",
    )


def _float32(
    values: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float32], tuple[int, int] | None]:
    """Cast a [rows, columns] matrix; also return the first non-finite cell, if any."""
    # Values beyond the float32 range become inf here and are reported with NaN and inf.
    with np.errstate(over="ignore"):
        result = np.ascontiguousarray(values, dtype=np.float32)
    bad = ~np.isfinite(result)
    if not bad.any():
        return result, None
    row, column = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return result, (int(row), int(column))


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    return "beyond the float32 range"


def _check_class_count(count: int) -> None:
    if count < 2:
        raise invalid(
            "Every row has the same label; classification needs at least 2 classes.", "file"
        )
    if count > MAX_CLASSES:
        raise invalid(
            f"The labels hold {count:,} distinct classes; at most {MAX_CLASSES:,} are "
            "accepted. Is this a regression target?",
            "file",
        )


def _other_format(data: bytes, filename: str | None, content_type: str | None) -> str | None:
    """What the upload is, when it is clearly neither CSV nor NPZ."""
    if data.startswith(_NPY_MAGIC):
        return "a single .npy array (an NPZ archive from np.savez(f, X=..., y=...) is needed)"
    if data.startswith(_GZIP_MAGIC):
        return "gzip-compressed"
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _OTHER_MEDIA_TYPES:
        return _OTHER_MEDIA_TYPES[media]
    if media.startswith(("image/", "audio/", "video/")):
        return f"{media.split('/')[0]} data"
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    if suffix in _OTHER_SUFFIXES:
        return _OTHER_SUFFIXES[suffix]
    # Text never holds NUL; UTF-16 text and binary formats almost always do.
    if b"\x00" in data:
        return "binary data, not UTF-8 text"
    return None


def _described(filename: str | None, content_type: str | None) -> str:
    parts = [_show(filename, _NAME_CHARS)] if filename else []
    if content_type:
        parts.append(_show(content_type, _NAME_CHARS))
    return f" ({', '.join(parts)})" if parts else ""


def _show(text: str, limit: int = _CELL_CHARS) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _name(name: str) -> str:
    return _show(name, _NAME_CHARS)


def _clip(name: str) -> str:
    return name if len(name) <= 2 * _NAME_CHARS else name[: 2 * _NAME_CHARS] + "…"


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
