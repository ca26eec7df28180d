"""What an upload may hold, and the checks CSV and NPZ parsing share to keep it there.

Sizes, shapes, class counts and finiteness are refused in the same words whichever format
carried them, and whatever of the upload a message repeats (cell values, names, media types)
is cut short so that a hostile upload cannot make the error document large.

The limits are read as ``limits.NAME`` when a check runs, never copied at import, so that
one assignment here changes them for both formats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from aiaas.errors import InvalidInput, invalid
from aiaas.ml.tensors.numbers import first_non_finite

MAX_ROWS: Final = 1_000_000
MAX_FEATURES: Final = 1_000_000
# A classification upload with more distinct labels than this is almost surely a regression
# target or an id column, and the model's output layer would be absurd anyway.
MAX_CLASSES: Final = 10_000
MAX_NPZ_BYTES: Final = 512 * 1024 * 1024
MAX_DIMS: Final = 4
MAX_DIM: Final = 4096
# An NPZ may unpack to at most this many times its own size (and MAX_NPZ_BYTES in all): a
# small compressed archive must not become hundreds of MB in memory.
NPZ_EXPANSION: Final = 16
NPZ_EXPANSION_FLOOR: Final = 8 * 1024 * 1024

_CELL_CHARS: Final = 20
NAME_CHARS: Final = 40


def check_input_shape(input_shape: Sequence[int] | None) -> tuple[int, ...] | None:
    if input_shape is None:
        return None
    dims = tuple(input_shape)
    valid = 1 <= len(dims) <= MAX_DIMS and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and 1 <= d <= MAX_DIM
        for d in dims
    )
    if not valid:
        shown = ", ".join(quoted(str(d)) if not isinstance(d, int) else str(d) for d in dims[:8])
        raise invalid(
            f"input_shape must list 1 to {MAX_DIMS} sizes, each from 1 to {MAX_DIM}; got "
            f"[{shown}{', ...' if len(dims) > 8 else ''}].",
            "input_shape",
        )
    return tuple(int(d) for d in dims)


def shape_mismatch(shape: tuple[int, ...], features: int, what: str) -> InvalidInput:
    return invalid(
        f"input_shape {list(shape)} holds {math.prod(shape):,} values per row but the file has "
        f"{features:,} {what}.",
        "input_shape",
    )


def check_class_count(count: int) -> None:
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


def to_float32(
    values: npt.NDArray[np.floating[Any]],
) -> tuple[npt.NDArray[np.float32], tuple[int, ...] | None]:
    """Cast a [rows, columns] matrix; also return the first non-finite cell, if any."""
    # Values beyond the float32 range become inf here and are reported with NaN and inf.
    with np.errstate(over="ignore"):
        result = np.ascontiguousarray(values, dtype=np.float32)
    return result, first_non_finite(result)


def non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    return "beyond the float32 range"


def quoted(text: str, limit: int = _CELL_CHARS) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def quoted_name(text: str) -> str:
    return quoted(text, NAME_CHARS)


def clipped_name(text: str) -> str:
    return text if len(text) <= 2 * NAME_CHARS else text[: 2 * NAME_CHARS] + "…"


def counted(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
