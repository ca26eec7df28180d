"""JSON prediction inputs to float32 batches: ``{"inputs": [...]}`` bodies and parsed lists.

orjson parses the body and numpy converts the lists in C; a few memchr scans over the raw
bytes tell whether booleans or strings could hide among the numbers, which numpy would
otherwise take in silently. Only when a fast check fails does a walk over the lists find the
first problem in document order and name its exact location.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt
import orjson

from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors.batches import (
    F32_MAX_SQ,
    FloatBatch,
    InputShape,
    check_dims,
    check_model_shape,
    check_rows,
    format_dims,
    items,
    refuse_rank,
    shape_phrase,
    to_float32,
    where,
)
from aiaas.ml.tensors.numbers import F32_MAX, NUMBER_KINDS

# Below it every element is within 2**53, where float64 holds integers exactly: casting them
# through float64 rounds once, as the general path's int64 -> float32 cast does.
_DIRECT_MAX_SQ: Final = min(F32_MAX_SQ, 2.0**106)

# Beyond this many "r"/"f" letters in a body, scanning them costs more than the exact check.
_MAX_LETTER_JUMPS: Final = 32


def decode_json_body(
    body: bytes, *, shape: InputShape, max_rows: int, field: str = "inputs"
) -> tuple[FloatBatch, dict[str, Any]]:
    """Decode a raw JSON request body ``{field: <one example or a list>, ...}``.

    Returns the batch (float32, C-contiguous, writable, batch axis first) and the body's
    other keys.
    """
    check_model_shape(shape, max_rows)
    parsed = _parse_json(body)
    if type(parsed) is not dict:
        raise InputInvalid(
            "the request body must be a JSON object",
            loc=["body"],
            expected="a JSON object",
            got=describe_json(parsed),
            type="object_type",
        )
    if field not in parsed:
        raise InputInvalid(
            f"the request body has no {field!r} field",
            loc=["body", field],
            expected=f"a field named {field!r}",
            got="no such field",
            type="missing",
        )
    keys = len(parsed)
    value = parsed.pop(field)
    may_hold_bools = _may_hold_bools(body)
    only_numbers = not may_hold_bools and not _may_hold_strings(body, keys)
    batch = _decode_parsed(value, shape, max_rows, (field,), may_hold_bools, only_numbers)
    return batch, parsed


def decode_json_inputs(
    value: Any,
    *,
    shape: InputShape,
    max_rows: int,
    loc: Sequence[str | int] = ("inputs",),
) -> FloatBatch:
    """Decode already-parsed JSON inputs (nested lists of numbers) like ``decode_json_body``."""
    check_model_shape(shape, max_rows)
    # There are no raw bytes to rule booleans out, so holds_bool always runs here. On the
    # development VM, for 784 numbers: ~4 µs when none is exactly 0 or 1, else ~25 µs
    # (np.array of the list itself: ~21 µs; a Python loop over np.asarray(value,
    # dtype=object) checking `type(x) is bool` took ~50 µs).
    return _decode_parsed(value, shape, max_rows, tuple(loc), True)


# --------------------------------------------------------------------------- decoding


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses numbers that overflow a double (1e400), which the stdlib reads as
        # inf; reading them lets the finiteness check name the element instead of calling
        # the whole body malformed. This costs nothing for well-formed bodies.
        if "infinity" not in str(exc):
            raise InputInvalid(
                f"the request body is not valid JSON: {exc}",
                loc=["body"],
                expected="a JSON object",
                got="invalid JSON",
                type="json_invalid",
            ) from None
    try:
        return json.loads(body, parse_constant=_refuse_json_constant)
    except (ValueError, RecursionError) as exc:
        raise InputInvalid(
            f"the request body is not valid JSON: {exc}",
            loc=["body"],
            expected="a JSON object",
            got="invalid JSON",
            type="json_invalid",
        ) from None


def _may_hold_bools(body: bytes) -> bool:
    """False when the raw body cannot hold a JSON boolean; True means "maybe"."""
    # A boolean can only come from the literal bytes `true` or `false`. `b"true" in body`
    # crawls over digits (its skip filter collides with them: ~20 µs for 784 doubles), but
    # bytes.find of one byte is memchr, and numbers never contain "r" or "f", so jumping
    # between those letters costs one memchr per letter in the keys and string values.
    for letter, word, back in ((b"r", b"true", 1), (b"f", b"false", 0)):
        position = body.find(letter)
        for _ in range(_MAX_LETTER_JUMPS):
            if position == -1:
                break
            if position >= back and body.startswith(word, position - back):
                return True
            position = body.find(letter, position + 1)
        else:
            # Lots of text in the body: leave it to the exact check.
            return True
    return False


def _may_hold_strings(body: bytes, keys: int) -> bool:
    """False when the raw body of a JSON object with ``keys`` keys holds no string but
    those keys; True means "maybe"."""
    # Every string takes two quote bytes, and the keys take 2 * keys of them: a body with no
    # more quotes than that has no string values anywhere. One memchr per quote.
    position = -1
    for _ in range(2 * keys + 1):
        position = body.find(b'"', position + 1)
        if position == -1:
            return False
    return True


def _refuse_json_constant(name: str) -> NoReturn:
    raise InputInvalid(
        f"the request body is not valid JSON: {name} is not a JSON value",
        loc=["body"],
        expected="a JSON object",
        got=name,
        type="json_invalid",
    )


def _decode_parsed(
    value: Any,
    shape: InputShape,
    max_rows: int,
    loc: tuple[str | int, ...],
    may_hold_bools: bool,
    only_numbers: bool = False,
) -> FloatBatch:
    """``value`` as a float32 batch. ``only_numbers``: the raw body holds no booleans and
    no strings, which a conversion straight to float32 would take in silently."""
    rank = len(shape)
    # One level past the deepest acceptable rank is enough to refuse and describe the input.
    dims = _first_path_dims(value, rank + 3)
    if dims and dims[0] == 0:
        raise InputInvalid(
            f"{where(loc)} must hold at least one example",
            loc=loc,
            expected="at least one example",
            got="an empty list",
            type="too_short",
        )
    if len(dims) == rank:
        single = True
    elif len(dims) == rank + 1:
        single = False
        check_rows(dims[0], max_rows, loc)
    else:
        if not dims:
            got = describe_json(value)
        elif len(dims) > rank + 2:
            got = f"shape {format_dims(dims[: rank + 2])[:-1]}, ...]"
        else:
            got = f"shape {format_dims(dims)}"
        refuse_rank(shape, loc, got, from_json=True)

    if only_numbers:
        # numpy then converts without first finding one type for all the elements: about
        # a sixth of the conversion. A null comes out NaN and a number beyond float32 (or an
        # integer beyond 2**53) fails the bound: they go on to the general path.
        try:
            direct: npt.NDArray[np.float64] | None = np.array(value, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            direct = None
        if (
            direct is not None
            and direct.ndim == len(dims)
            and np.vdot(direct, direct) <= _DIRECT_MAX_SQ
        ):
            check_dims(direct.shape, shape, max_rows, loc, single=single, from_json=True)
            batch: FloatBatch = direct.astype(np.float32)
            return batch.reshape((1, *batch.shape)) if single else batch
    try:
        array: npt.NDArray[Any] | None = np.array(value)
    except (ValueError, TypeError, OverflowError):
        # Ragged lists, or lists mixed with numbers at one level.
        array = None
    if array is None or array.dtype.kind not in NUMBER_KINDS or array.ndim != len(dims):
        _find_problem(value, shape, single, loc)
        # The walk found every element a number: only Python ints beyond 64 bits make numpy
        # fall back to objects, and the walk has refused those that float32 cannot hold.
        array = np.array(value, dtype=np.float64)
    elif may_hold_bools and holds_bool(value, array):
        _find_problem(value, shape, single, loc)
    check_dims(array.shape, shape, max_rows, loc, single=single, from_json=True)
    batch = to_float32(array, loc)
    return batch.reshape((1, *batch.shape)) if single else batch


def _first_path_dims(value: Any, limit: int) -> list[int]:
    """Lengths along value, value[0], value[0][0]...: the shape, if the lists are regular."""
    dims: list[int] = []
    node = value
    while type(node) is list and len(dims) < limit:
        dims.append(len(node))
        if not node:
            break
        node = node[0]
    return dims


def holds_bool(value: list[Any], array: npt.NDArray[Any]) -> bool:
    """Whether the regular nested lists ``value``, read as ``array``, hold a boolean."""
    # numpy silently reads True as 1 and False as 0 among other numbers, so an array with
    # neither value cannot hold a boolean: a vectorised test that spares continuous data
    # the per-element type check (~4 µs against ~21 µs for 784 numbers on the dev VM).
    if not ((array == 0) | (array == 1)).any():
        return False
    leaves: Iterable[Any] = value
    for _ in range(array.ndim - 1):
        leaves = chain.from_iterable(leaves)
    # `in` on the map compares type objects by identity, all in C.
    return bool in map(type, leaves)


def _find_problem(value: Any, shape: InputShape, single: bool, loc: tuple[str | int, ...]) -> None:
    """Raise for the first problem in document order; return if there is none.

    Only called once a fast check has failed, so it may be slow.
    """
    # The batch axis takes any length (its bounds were checked already); it is None here
    # but not variable: examples need not agree on it.
    axes: tuple[int | None, ...] = shape if single else (None, *shape)
    first_variable = 0 if single else 1
    seen: dict[int, tuple[int, tuple[str | int, ...]]] = {}
    expected_shape = shape_phrase(shape, from_json=True)

    def visit(node: Any, depth: int, path: tuple[str | int, ...]) -> None:
        if type(node) is not list:
            want = axes[depth]
            what = "a list" if want is None else f"a list of {want} items"
            raise InputInvalid(
                f"{where(path)} must be {what}, got {describe_json(node)}; "
                f"{where(loc)} must have shape {expected_shape}",
                loc=path,
                expected=what,
                got=describe_json(node),
                type="shape_mismatch",
            )
        _check_length(node, depth, path)
        if depth + 1 == len(axes):
            for index, leaf in enumerate(node):
                _check_leaf(leaf, (*path, index))
        else:
            for index, child in enumerate(node):
                visit(child, depth + 1, (*path, index))

    def _check_length(node: list[Any], depth: int, path: tuple[str | int, ...]) -> None:
        want = axes[depth]
        if want is not None:
            if len(node) != want:
                raise InputInvalid(
                    f"{where(path)} has {items(len(node))}, expected {want}; "
                    f"{where(loc)} must have shape {expected_shape}",
                    loc=path,
                    expected=items(want),
                    got=items(len(node)),
                    type="shape_mismatch",
                )
            return
        if depth < first_variable:
            return
        if not node:
            raise InputInvalid(
                f"{where(path)} is empty; a variable-length (*) axis needs at least one item",
                loc=path,
                expected="at least one item",
                got="an empty list",
                type="too_short",
            )
        first_length, first_path = seen.setdefault(depth, (len(node), path))
        if len(node) != first_length:
            raise InputInvalid(
                f"{where(path)} has {items(len(node))} but {where(first_path)} has "
                f"{first_length}: all examples in one request must have the same length "
                "on each variable-length (*) axis",
                loc=path,
                expected=items(first_length),
                got=items(len(node)),
                type="ragged",
            )

    visit(value, 0, loc)


def _check_leaf(leaf: Any, path: tuple[str | int, ...]) -> None:
    kind = type(leaf)
    if kind is float:
        return
    if kind is int:
        if -F32_MAX <= leaf <= F32_MAX:
            return
        raise InputInvalid(
            f"inputs must be finite; {where(path)} is a number beyond the float32 range",
            loc=path,
            expected="a finite number",
            got="a number beyond the float32 range",
            type="finite_number",
        )
    raise InputInvalid(
        f"{where(path)} must be a number, got {describe_json(leaf)}",
        loc=path,
        expected="a number",
        got=describe_json(leaf),
        type="number_type",
    )


def describe_json(value: Any) -> str:
    """A parsed JSON value's kind, as a client would name it: "a string", "null"..."""
    kind = type(value)
    if kind is bool:
        return "a boolean"
    if kind is int or kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if value is None:
        return "null"
    if kind is dict:
        return "an object"
    if kind is list:
        return "a list"
    return f"a {kind.__name__}"
