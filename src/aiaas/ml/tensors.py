"""Prediction inputs to float32 batches: JSON and ``.npy`` decoding with client-facing errors.

This runs on every prediction request, so the happy path stays in C (orjson, numpy, a few
substring searches) and never loops over elements in Python. When a fast check fails, a
slow walk over the structure finds the first problem in document order and reports it with
its exact location, so refusals are precise without making good requests pay for that.

Every refusal is an :class:`~aiaas.ml.errors.InputInvalid`. Its ``type`` is one of
``json_invalid``, ``object_type``, ``missing``, ``shape_mismatch``, ``ragged``,
``number_type``, ``finite_number``, ``too_short``, ``too_long``, ``npy_invalid`` and
``dtype_not_accepted``.

Shapes in messages use ``n`` for the batch axis and ``*`` for a variable-length axis, so a
model taking sequences of 1-feature steps reads as ``[n, *, 1]``.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt
import orjson

from aiaas.ml.errors import InputInvalid
from aiaas.ml.limits import LIMITS

InputShape = tuple[int | None, ...]
"""A version's input shape without the batch axis; ``None`` marks a variable-length axis."""

FloatBatch = npt.NDArray[np.float32]

_F32_MAX: Final = float(np.finfo(np.float32).max)
_F32_MAX_SQ: Final = _F32_MAX * _F32_MAX
# Below it every element is within 2**53, where float64 holds integers exactly: casting them
# through float64 rounds once, as the general path's int64 -> float32 cast does.
_DIRECT_MAX_SQ: Final = min(_F32_MAX_SQ, 2.0**106)
_NUMBER_KINDS: Final = "iuf"

# Beyond this many "r"/"f" letters in a body, scanning them costs more than the exact check.
_MAX_LETTER_JUMPS: Final = 32

_NPY_MAGIC: Final = b"\x93NUMPY"
_ZIP_MAGIC: Final = b"PK\x03\x04"
# numpy's own reader refuses longer headers for the same reason: literal_eval on a large
# hostile string is slow.
_NPY_MAX_HEADER: Final = 10_000
# The exact header np.save writes; anything else goes through the general parser.
_NPY_CANONICAL_HEADER: Final = re.compile(
    rb"\{'descr': '([<>|=]?[iuf]\d*)', 'fortran_order': (False|True), "
    rb"'shape': \(((?:\d+, )*(?:\d+,?)?)\), \} *\n"
)
_NPY_DESCR: Final = re.compile(r"[<>|=]?([A-Za-z?])(\d*)(?:\[\w+\])?")
_NPY_KEYS: Final = frozenset({"descr", "fortran_order", "shape"})
_REFUSED_DTYPE_KINDS: Final = {
    "b": "booleans",
    "?": "booleans",
    "c": "complex numbers",
    "O": "Python objects",
    "U": "strings",
    "S": "byte strings",
    "a": "byte strings",
    "V": "raw or structured records",
    "M": "datetimes",
    "m": "timedeltas",
}


# --------------------------------------------------------------------------- public API


def decode_json_body(
    body: bytes, *, shape: InputShape, max_rows: int, field: str = "inputs"
) -> tuple[FloatBatch, dict[str, Any]]:
    """Decode a raw JSON request body ``{field: <one example or a list>, ...}``.

    Returns the batch (float32, C-contiguous, writable, batch axis first) and the body's
    other keys.
    """
    _check_model_shape(shape, max_rows)
    parsed = _parse_json(body)
    if type(parsed) is not dict:
        raise InputInvalid(
            "the request body must be a JSON object",
            loc=["body"],
            expected="a JSON object",
            got=_describe(parsed),
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
    _check_model_shape(shape, max_rows)
    # There are no raw bytes to rule booleans out, so _holds_bool always runs here. On the
    # development VM, for 784 numbers: ~4 µs when none is exactly 0 or 1, else ~25 µs
    # (np.array of the list itself: ~21 µs; a Python loop over np.asarray(value,
    # dtype=object) checking `type(x) is bool` took ~50 µs).
    return _decode_parsed(value, shape, max_rows, tuple(loc), True)


def decode_npy(body: bytes, *, shape: InputShape, max_rows: int) -> FloatBatch:
    """Decode a ``.npy`` body holding a batch (first axis = examples) of ints or floats.

    The header is parsed here rather than by ``np.load``: np.load allocates the array the
    header claims before reading any data, so a 100-byte body could ask for terabytes. It
    also means object arrays are refused from their header alone; nothing is unpickled.
    """
    _check_model_shape(shape, max_rows)
    loc: tuple[str | int, ...] = ("body",)
    dtype, fortran_order, dims, offset = _read_npy_header(body)
    _check_dims(dims, shape, max_rows, loc, single=False, from_json=False)
    count = math.prod(dims)
    have = len(body) - offset
    need = count * dtype.itemsize
    if have != need:
        detail = "is truncated" if have < need else f"is followed by {_plural(have - need, 'byte')}"
        raise InputInvalid(
            f"the body is not a .npy array: its data {detail} "
            f"(the header promises {_plural(need, 'byte')}, {have} follow)",
            loc=loc,
            expected=f"{_plural(need, 'byte')} of data",
            got=_plural(have, "byte"),
            type="npy_invalid",
        )
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(dims, order="F" if fortran_order else "C")
    return _to_float32(array, loc)


def encode_npy(array: npt.ArrayLike) -> bytes:
    """Serialise ``array`` as a standard float32 ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


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
    _check_model_shape(shape, max_rows)
    where = tuple(loc)
    _check_dtype(array.dtype, where)
    _check_dims(array.shape, shape, max_rows, where, single=False, from_json=False)
    return _to_float32(array, where)


# --------------------------------------------------------------------------- JSON


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
            f"{_where(loc)} must hold at least one example",
            loc=loc,
            expected="at least one example",
            got="an empty list",
            type="too_short",
        )
    if len(dims) == rank:
        single = True
    elif len(dims) == rank + 1:
        single = False
        _check_rows(dims[0], max_rows, loc)
    else:
        if not dims:
            got = _describe(value)
        elif len(dims) > rank + 2:
            got = f"shape {_format_dims(dims[: rank + 2])[:-1]}, ...]"
        else:
            got = f"shape {_format_dims(dims)}"
        _refuse_rank(shape, loc, got, from_json=True)

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
            _check_dims(direct.shape, shape, max_rows, loc, single=single, from_json=True)
            batch: FloatBatch = direct.astype(np.float32)
            return batch.reshape((1, *batch.shape)) if single else batch
    try:
        array: npt.NDArray[Any] | None = np.array(value)
    except (ValueError, TypeError, OverflowError):
        # Ragged lists, or lists mixed with numbers at one level.
        array = None
    if array is None or array.dtype.kind not in _NUMBER_KINDS or array.ndim != len(dims):
        _find_problem(value, shape, single, loc)
        # The walk found every element a number: only Python ints beyond 64 bits make numpy
        # fall back to objects, and the walk has refused those that float32 cannot hold.
        array = np.array(value, dtype=np.float64)
    elif may_hold_bools and _holds_bool(value, array):
        _find_problem(value, shape, single, loc)
    _check_dims(array.shape, shape, max_rows, loc, single=single, from_json=True)
    batch = _to_float32(array, loc)
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


def _holds_bool(value: list[Any], array: npt.NDArray[Any]) -> bool:
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
    expected_shape = _shape_phrase(shape, from_json=True)

    def visit(node: Any, depth: int, path: tuple[str | int, ...]) -> None:
        if type(node) is not list:
            want = axes[depth]
            what = "a list" if want is None else f"a list of {want} items"
            raise InputInvalid(
                f"{_where(path)} must be {what}, got {_describe(node)}; "
                f"{_where(loc)} must have shape {expected_shape}",
                loc=path,
                expected=what,
                got=_describe(node),
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
                    f"{_where(path)} has {_items(len(node))}, expected {want}; "
                    f"{_where(loc)} must have shape {expected_shape}",
                    loc=path,
                    expected=_items(want),
                    got=_items(len(node)),
                    type="shape_mismatch",
                )
            return
        if depth < first_variable:
            return
        if not node:
            raise InputInvalid(
                f"{_where(path)} is empty; a variable-length (*) axis needs at least one item",
                loc=path,
                expected="at least one item",
                got="an empty list",
                type="too_short",
            )
        first_length, first_path = seen.setdefault(depth, (len(node), path))
        if len(node) != first_length:
            raise InputInvalid(
                f"{_where(path)} has {_items(len(node))} but {_where(first_path)} has "
                f"{first_length}: all examples in one request must have the same length "
                "on each variable-length (*) axis",
                loc=path,
                expected=_items(first_length),
                got=_items(len(node)),
                type="ragged",
            )

    visit(value, 0, loc)


def _check_leaf(leaf: Any, path: tuple[str | int, ...]) -> None:
    kind = type(leaf)
    if kind is float:
        return
    if kind is int:
        if -_F32_MAX <= leaf <= _F32_MAX:
            return
        raise InputInvalid(
            f"inputs must be finite; {_where(path)} is a number beyond the float32 range",
            loc=path,
            expected="a finite number",
            got="a number beyond the float32 range",
            type="finite_number",
        )
    raise InputInvalid(
        f"{_where(path)} must be a number, got {_describe(leaf)}",
        loc=path,
        expected="a number",
        got=_describe(leaf),
        type="number_type",
    )


def _describe(value: Any) -> str:
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


# --------------------------------------------------------------------------- .npy


def _refuse_npy(reason: str) -> NoReturn:
    raise InputInvalid(
        f"the body is not a .npy array: {reason}",
        loc=["body"],
        expected="a .npy array",
        got="not a .npy array",
        type="npy_invalid",
    )


def _read_npy_header(body: bytes) -> tuple[np.dtype[Any], bool, tuple[int, ...], int]:
    """Return (dtype, fortran_order, shape, data offset) of a ``.npy`` body."""
    if body.startswith(_ZIP_MAGIC):
        _refuse_npy("it is a zip (.npz) archive; send one array saved with np.save")
    if not body.startswith(_NPY_MAGIC) or len(body) < 10:
        _refuse_npy("it does not start with the .npy magic bytes")
    major, minor = body[6], body[7]
    if (major, minor) == (1, 0):
        start = 10
        header_len = int.from_bytes(body[8:10], "little")
    elif (major, minor) in ((2, 0), (3, 0)):
        start = 12
        header_len = int.from_bytes(body[8:12], "little")
    else:
        _refuse_npy(f"unsupported format version {major}.{minor}")
    end = start + header_len
    if len(body) < end:
        _refuse_npy("the header is truncated")
    if header_len > _NPY_MAX_HEADER:
        _refuse_npy(f"the header is longer than {_NPY_MAX_HEADER} bytes")
    dtype, fortran_order, dims = _npy_header_fields(body[start:end], major)
    return dtype, fortran_order, dims, end


@functools.lru_cache(maxsize=256)
def _npy_header_fields(header: bytes, major: int) -> tuple[np.dtype[Any], bool, tuple[int, ...]]:
    # Cached: a client sends the same header with every request, and parsing it (two regular
    # expressions and a dtype lookup) cost a twentieth of a small .npy request. Refused
    # headers raise, and exceptions are never cached.
    match = _NPY_CANONICAL_HEADER.fullmatch(header)
    if match is not None:
        descr = match[1].decode("ascii")
        fortran_order = match[2] == b"True"
        parts = [part.strip() for part in match[3].split(b",") if part.strip()]
        # int() refuses strings of over 4,300 digits with a ValueError of its own; a
        # dimension of 19 digits is already beyond any array.
        if any(len(part) > 18 for part in parts):
            _refuse_npy("a dimension in the header is too large")
        dims = tuple(int(part) for part in parts)
    else:
        descr, fortran_order, dims = _parse_npy_header(header, major)
    return _npy_dtype(descr), fortran_order, dims


def _parse_npy_header(header: bytes, major: int) -> tuple[str, bool, tuple[int, ...]]:
    try:
        text = header.decode("utf-8" if major == 3 else "latin-1")
        # literal_eval only builds literals; it cannot call anything.
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        _refuse_npy("the header is not a Python dict literal")
    if type(parsed) is not dict or set(parsed) != _NPY_KEYS:
        _refuse_npy("the header must have exactly the keys descr, fortran_order and shape")
    descr, fortran_order, dims = parsed["descr"], parsed["fortran_order"], parsed["shape"]
    if type(fortran_order) is not bool:
        _refuse_npy("fortran_order must be True or False")
    if type(dims) is not tuple or not all(type(d) is int and d >= 0 for d in dims):
        _refuse_npy("shape must be a tuple of non-negative integers")
    if type(descr) is list:
        _refuse_dtype("raw or structured records", repr(descr))
    if type(descr) is not str:
        _refuse_npy("descr must be a dtype string")
    return descr, fortran_order, dims


def _npy_dtype(descr: str) -> np.dtype[Any]:
    match = _NPY_DESCR.fullmatch(descr)
    if match is None:
        _refuse_npy(f"unknown dtype {descr!r}")
    code = match[1]
    if code in _REFUSED_DTYPE_KINDS:
        _refuse_dtype(_REFUSED_DTYPE_KINDS[code], descr)
    if code not in _NUMBER_KINDS:
        _refuse_npy(f"unknown dtype {descr!r}")
    # Only integer and float codes reach np.dtype, which also keeps deprecated aliases
    # (whose warnings a client could otherwise trigger) away from it.
    try:
        return np.dtype(descr)
    except TypeError:
        _refuse_npy(f"unknown dtype {descr!r}")


def _refuse_dtype(what: str, descr: str) -> NoReturn:
    if what == "Python objects":
        msg = "object arrays are not accepted; send integers or floats"
    else:
        msg = f"arrays of {what} (dtype {descr}) are not accepted; send integers or floats"
    raise InputInvalid(
        msg,
        loc=["body"],
        expected="an integer or float dtype",
        got=f"dtype {descr}",
        type="dtype_not_accepted",
    )


def _check_dtype(dtype: np.dtype[Any], loc: tuple[str | int, ...]) -> None:
    if dtype.kind in _NUMBER_KINDS:
        return
    what = _REFUSED_DTYPE_KINDS.get(dtype.kind, "non-numeric values")
    raise InputInvalid(
        f"{_where(loc)} holds {what} (dtype {dtype}); send integers or floats",
        loc=loc,
        expected="an integer or float dtype",
        got=f"dtype {dtype}",
        type="dtype_not_accepted",
    )


# --------------------------------------------------------------------------- shared checks


def _check_model_shape(shape: InputShape, max_rows: int) -> None:
    # A bad model shape is the server's bug, not the client's: plain ValueError.
    if not shape or not all(d is None or (type(d) is int and d >= 1) for d in shape):
        raise ValueError(f"invalid input shape {shape!r}: need >= 1 axes, each None or >= 1")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")


def _check_rows(rows: int, max_rows: int, loc: tuple[str | int, ...]) -> None:
    if rows == 0:
        raise InputInvalid(
            f"{_where(loc)} must hold at least one example",
            loc=loc,
            expected="at least one example",
            got="0 examples",
            type="too_short",
        )
    if rows > max_rows:
        raise InputInvalid(
            f"{_where(loc)} holds {rows} examples; at most {max_rows} are allowed per request",
            loc=loc,
            expected=f"at most {max_rows} examples",
            got=f"{rows} examples",
            type="too_long",
        )


def _check_dims(
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
        _refuse_rank(shape, loc, f"shape {_format_dims(dims)}", from_json=from_json)
    if not single:
        _check_rows(dims[0], max_rows, loc)
    for position, (got, want) in enumerate(zip(example, shape, strict=True)):
        if want is not None and got != want:
            raise InputInvalid(
                f"{_where(loc)} must have shape {_shape_phrase(shape, from_json=from_json)}, "
                f"got shape {_format_dims(dims)}",
                loc=loc,
                expected=_expected_shape(shape, from_json=from_json),
                got=f"shape {_format_dims(dims)}",
                type="shape_mismatch",
            )
        if want is None and got > LIMITS.max_sequence_length:
            axis = len(dims) - len(example) + position
            raise InputInvalid(
                f"{_where(loc)} has {got} steps on its variable-length axis {axis}; at most "
                f"{LIMITS.max_sequence_length} are accepted (AIAAS_MAX_SEQUENCE_LENGTH)",
                loc=(*loc, f"axis {axis}"),
                expected=f"at most {LIMITS.max_sequence_length} items on each variable axis",
                got=f"shape {_format_dims(dims)}",
                type="too_long",
            )
        if got == 0:
            raise InputInvalid(
                f"{_where(loc)} has an empty variable-length (*) axis "
                f"(shape {_format_dims(dims)}); it needs at least one item",
                loc=loc,
                expected="at least one item on each variable-length (*) axis",
                got=f"shape {_format_dims(dims)}",
                type="too_short",
            )


def _refuse_rank(
    shape: InputShape, loc: tuple[str | int, ...], got: str, *, from_json: bool
) -> NoReturn:
    raise InputInvalid(
        f"{_where(loc)} must have shape {_shape_phrase(shape, from_json=from_json)}, got {got}",
        loc=loc,
        expected=_expected_shape(shape, from_json=from_json),
        got=got,
        type="shape_mismatch",
    )


def _to_float32(array: npt.NDArray[Any], loc: tuple[str | int, ...]) -> FloatBatch:
    """Cast to C-contiguous, writable float32, refusing NaN, ±inf and float32 overflow."""
    copy = not array.flags.writeable
    kind = array.dtype.kind
    if kind != "f":
        # Even 2**64 is far inside the float32 range, so integers always stay finite.
        return array.astype(np.float32, order="C", copy=copy)
    if array.dtype == np.float64:
        # One BLAS call bounds every |x| by the sum of squares; NaN and inf fail the
        # comparison. Casting after it cannot overflow, so no errstate is needed.
        if np.vdot(array, array) <= _F32_MAX_SQ:
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
    bad = ~np.isfinite(result)
    if not bad.any():
        return result
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), result.shape))
    value = float(original[index])
    if math.isnan(value):
        got = "NaN"
    elif math.isinf(value):
        got = "Infinity" if value > 0 else "-Infinity"
    else:
        got = "a number beyond the float32 range"
    path = (*loc, *index)
    raise InputInvalid(
        f"inputs must be finite; {_where(path)} is {got}",
        loc=path,
        expected="a finite number",
        got=got,
        type="finite_number",
    )


def _where(loc: Sequence[str | int]) -> str:
    """Render a location the way a client would index it: ``inputs[3][1]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "the input"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _items(count: int) -> str:
    return _plural(count, "item")


def _format_dims(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in dims) + "]"


def _batch_shape(shape: InputShape) -> str:
    return "[n, " + _format_dims(shape)[1:]


def _expected_shape(shape: InputShape, *, from_json: bool) -> str:
    if from_json:
        return f"shape {_batch_shape(shape)} or {_format_dims(shape)}"
    return f"shape {_batch_shape(shape)}"


def _shape_phrase(shape: InputShape, *, from_json: bool) -> str:
    if from_json:
        return f"{_batch_shape(shape)} (a list of examples) or {_format_dims(shape)} (one example)"
    return f"{_batch_shape(shape)} (the first axis indexes the examples)"
