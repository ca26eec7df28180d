"""The float32 batch every input decoder produces, and the checks all of them share.

A batch is C-contiguous, writable float32 with the examples on its first axis. Whatever it
was decoded from, it meets the model's input shape, the per-request row limit, the
variable-length axis limit and finiteness here, refused in the same words, so a client sees
one set of messages whether it sent JSON, ``.npy`` or an array through the SDK.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from aiaas.ml.errors import InputInvalid
from aiaas.ml.limits import LIMITS
from aiaas.ml.tensors.numbers import F32_MAX, NUMBER_KINDS, REFUSED_KINDS, first_non_finite

InputShape = tuple[int | None, ...]
"""A version's input shape without the batch axis; ``None`` marks a variable-length axis."""

FloatBatch = npt.NDArray[np.float32]

F32_MAX_SQ: Final = F32_MAX * F32_MAX


def validate_batch(
    array: npt.NDArray[Any],
    *,
    shape: InputShape,
    max_rows: int,
    loc: Sequence[str | int] = ("inputs",),
) -> FloatBatch:
    """Check a batch (first axis = examples) against the model and return it as float32.

    The result is C-contiguous and writable; it is ``array`` itself when that already
    qualifies, otherwise a converted copy.
    """
    check_model_shape(shape, max_rows)
    path = tuple(loc)
    check_dtype(array.dtype, path)
    check_dims(array.shape, shape, max_rows, path, single=False, from_json=False)
    return to_float32(array, path)


def check_model_shape(shape: InputShape, max_rows: int) -> None:
    # A bad model shape is the server's bug, not the client's: plain ValueError.
    if not shape or not all(d is None or (type(d) is int and d >= 1) for d in shape):
        raise ValueError(f"invalid input shape {shape!r}: need >= 1 axes, each None or >= 1")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")


def check_dtype(dtype: np.dtype[Any], loc: tuple[str | int, ...]) -> None:
    if dtype.kind in NUMBER_KINDS:
        return
    what = REFUSED_KINDS.get(dtype.kind, "non-numeric values")
    raise InputInvalid(
        f"{where(loc)} holds {what} (dtype {dtype}); send integers or floats",
        loc=loc,
        expected="an integer or float dtype",
        got=f"dtype {dtype}",
        type="dtype_not_accepted",
    )


def check_rows(rows: int, max_rows: int, loc: tuple[str | int, ...]) -> None:
    if rows == 0:
        raise InputInvalid(
            f"{where(loc)} must hold at least one example",
            loc=loc,
            expected="at least one example",
            got="0 examples",
            type="too_short",
        )
    if rows > max_rows:
        raise InputInvalid(
            f"{where(loc)} holds {rows} examples; at most {max_rows} are allowed per request",
            loc=loc,
            expected=f"at most {max_rows} examples",
            got=f"{rows} examples",
            type="too_long",
        )


def check_dims(
    dims: tuple[int, ...],
    shape: InputShape,
    max_rows: int,
    loc: tuple[str | int, ...],
    *,
    single: bool,
    from_json: bool,
) -> None:
    """Check an array's shape; ``single`` means it is one example with no batch axis."""
    example = dims if single else dims[1:]
    if len(example) != len(shape) or (not single and not dims):
        refuse_rank(shape, loc, f"shape {format_dims(dims)}", from_json=from_json)
    if not single:
        check_rows(dims[0], max_rows, loc)
    for position, (got, want) in enumerate(zip(example, shape, strict=True)):
        if want is not None and got != want:
            raise InputInvalid(
                f"{where(loc)} must have shape {shape_phrase(shape, from_json=from_json)}, "
                f"got shape {format_dims(dims)}",
                loc=loc,
                expected=_expected_shape(shape, from_json=from_json),
                got=f"shape {format_dims(dims)}",
                type="shape_mismatch",
            )
        if want is None and got > LIMITS.max_sequence_length:
            axis = len(dims) - len(example) + position
            raise InputInvalid(
                f"{where(loc)} has {got} steps on its variable-length axis {axis}; at most "
                f"{LIMITS.max_sequence_length} are accepted (AIAAS_MAX_SEQUENCE_LENGTH)",
                loc=(*loc, f"axis {axis}"),
                expected=f"at most {LIMITS.max_sequence_length} items on each variable axis",
                got=f"shape {format_dims(dims)}",
                type="too_long",
            )
        if got == 0:
            raise InputInvalid(
                f"{where(loc)} has an empty variable-length (*) axis "
                f"(shape {format_dims(dims)}); it needs at least one item",
                loc=loc,
                expected="at least one item on each variable-length (*) axis",
                got=f"shape {format_dims(dims)}",
                type="too_short",
            )


def refuse_rank(
    shape: InputShape, loc: tuple[str | int, ...], got: str, *, from_json: bool
) -> NoReturn:
    raise InputInvalid(
        f"{where(loc)} must have shape {shape_phrase(shape, from_json=from_json)}, got {got}",
        loc=loc,
        expected=_expected_shape(shape, from_json=from_json),
        got=got,
        type="shape_mismatch",
    )


def to_float32(array: npt.NDArray[Any], loc: tuple[str | int, ...]) -> FloatBatch:
    """Cast to C-contiguous, writable float32, refusing NaN, ±inf and float32 overflow."""
    copy = not array.flags.writeable
    kind = array.dtype.kind
    if kind != "f":
        # Even 2**64 is far inside the float32 range, so integers always stay finite.
        return array.astype(np.float32, order="C", copy=copy)
    if array.dtype == np.float64:
        # One BLAS call bounds every |x| by the sum of squares; NaN and inf fail the
        # comparison. Casting after it cannot overflow, so no errstate is needed.
        if np.vdot(array, array) <= F32_MAX_SQ:
            return array.astype(np.float32, order="C", copy=copy)
    elif array.dtype.itemsize <= 4:
        result = array.astype(np.float32, order="C", copy=copy)
        # Large but finite values can overflow the float32 sum; the exact check below
        # sorts those out.
        if math.isfinite(np.vdot(result, result)):
            return result
        return _refuse_non_finite(array, result, loc)
    with np.errstate(over="ignore", invalid="ignore"):
        result = array.astype(np.float32, order="C", copy=copy)
    return _refuse_non_finite(array, result, loc)


def _refuse_non_finite(
    original: npt.NDArray[Any], result: FloatBatch, loc: tuple[str | int, ...]
) -> FloatBatch:
    """Raise for the first non-finite element of ``result``; return it if there is none."""
    index = first_non_finite(result)
    if index is None:
        return result
    value = float(original[index])
    if math.isnan(value):
        got = "NaN"
    elif math.isinf(value):
        got = "Infinity" if value > 0 else "-Infinity"
    else:
        got = "a number beyond the float32 range"
    path = (*loc, *index)
    raise InputInvalid(
        f"inputs must be finite; {where(path)} is {got}",
        loc=path,
        expected="a finite number",
        got=got,
        type="finite_number",
    )


# --------------------------------------------------------------------------- wording


def where(loc: Sequence[str | int]) -> str:
    """Render a location the way a client would index it: ``inputs[3][1]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "the input"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def items(count: int) -> str:
    return plural(count, "item")


def format_dims(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in dims) + "]"


def shape_phrase(shape: InputShape, *, from_json: bool) -> str:
    if from_json:
        return f"{_batch_shape(shape)} (a list of examples) or {format_dims(shape)} (one example)"
    return f"{_batch_shape(shape)} (the first axis indexes the examples)"


def _batch_shape(shape: InputShape) -> str:
    return "[n, " + format_dims(shape)[1:]


def _expected_shape(shape: InputShape, *, from_json: bool) -> str:
    if from_json:
        return f"shape {_batch_shape(shape)} or {format_dims(shape)}"
    return f"shape {_batch_shape(shape)}"
