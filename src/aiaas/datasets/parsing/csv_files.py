"""CSV uploads to :class:`DatasetArrays`: UTF-8, comma-separated, with a header row.

Refusals are located at ``["file", <line>]`` or ``["file", <line>, <column>]``: a line
counted from 1 with the header included (what an editor shows), and a column by its header
name; ``["label_column"]`` when the label column is missing.

Cells are read with the ``csv`` module and converted a whole matrix at a time; only when
that fails is the file walked again to find the first bad cell and its line, so good uploads
never pay for precise errors.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from aiaas.datasets.arrays import ClassLabel, DatasetArrays
from aiaas.datasets.parsing import limits
from aiaas.datasets.parsing.limits import (
    check_class_count,
    check_input_shape,
    clipped_name,
    counted,
    non_finite,
    quoted,
    quoted_name,
    shape_mismatch,
    to_float32,
)
from aiaas.errors import InvalidInput, invalid
from aiaas.ml.task import Task

# Up to 18 digits always fits int64; longer "integers" are kept as names instead.
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,18}")
# Cells parsed at once: their strings weigh ~60 bytes each, so a chunk stays near 4 MB.
_CELLS_PER_CHUNK: Final = 65_536
_LISTED_COLUMNS: Final = 10


def parse_csv(
    data: bytes,
    *,
    task: Task,
    label_column: str = "label",
    input_shape: Sequence[int] | None = None,
) -> DatasetArrays:
    """Parse UTF-8, comma-separated text with a header row; every other column is a feature."""
    shape = check_input_shape(input_shape)
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
            f"The file has no feature columns: its only column is {quoted_name(label)}.", "file"
        )
    if shape is not None and math.prod(shape) != len(feature_names):
        raise shape_mismatch(shape, len(feature_names), "feature columns")
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
        if seen > limits.MAX_ROWS:
            raise invalid(f"The file has more than {limits.MAX_ROWS:,} rows.", "file")
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


# --------------------------------------------------------------------------- reading


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
    if len(header) - 1 > limits.MAX_FEATURES:
        raise invalid(
            f"The header has more than {limits.MAX_FEATURES:,} feature columns.", "file", line
        )
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
                f"The header names column {quoted_name(name)} twice (columns {seen[name]} and "
                f"{position}).",
                "file",
                line,
                clipped_name(name),
            )
        seen[name] = position
    return names


def _missing_label_column(label: str, names: list[str]) -> InvalidInput:
    listed = ", ".join(quoted_name(name) for name in names[:_LISTED_COLUMNS])
    if len(names) > _LISTED_COLUMNS:
        listed += f" and {len(names) - _LISTED_COLUMNS} more"
    hint = " Set label_column to the column that holds the labels."
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        hint = " Only comma-separated files are accepted."
    return invalid(
        f"The file has no {quoted_name(label)} column; its columns are {listed}.{hint}",
        "label_column",
    )


def _check_widths(text: str, rows: list[list[str]], width: int, *, offset: int) -> None:
    if set(map(len, rows)) == {width}:
        return
    row = next(i for i, cells in enumerate(rows) if len(cells) != width)
    line = _line_of(text, offset + row)
    raise invalid(
        f"Line {line} has {counted(len(rows[row]), 'cell')} but the header has "
        f"{counted(width, 'column')}.",
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
    problem = "is empty" if not value.strip() else f"holds {quoted(value)}, which is not a number"
    raise invalid(
        f"Line {line}, column {quoted_name(names[column])}: the cell {problem}.",
        "file",
        line,
        clipped_name(names[column]),
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
    result, bad = to_float32(values)
    if bad is None:
        return result
    row, column = bad
    line = _line_of(text, offset + row)
    raise invalid(
        f"Line {line}, column {quoted_name(names[column])}: the value is "
        f"{non_finite(float(values[row, column]))}; every value must be a finite number.",
        "file",
        line,
        clipped_name(names[column]),
    )


def _csv_classes(
    text: str, labels: npt.NDArray[np.str_], column: str
) -> tuple[npt.NDArray[np.int64], list[ClassLabel]]:
    stripped = np.char.strip(labels)
    empty = stripped == ""
    if empty.any():
        line = _line_of(text, int(np.argmax(empty)))
        raise invalid(
            f"Line {line}, column {quoted_name(column)}: the label is empty.",
            "file",
            line,
            clipped_name(column),
        )
    distinct, inverse = np.unique(stripped, return_inverse=True)
    names: list[str] = distinct.tolist()
    check_class_count(len(names))
    if not all(_INTEGER.fullmatch(name) for name in names):
        return inverse.reshape(-1).astype(np.int64), list(names)
    # "7" and "07" are the same class.
    values = [int(name) for name in names]
    classes = sorted(set(values))
    check_class_count(len(classes))
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
