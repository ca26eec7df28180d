"""``.npy`` bodies: prediction inputs decoded to float32 batches, and outputs encoded back.

The header is parsed by hand (see :func:`decode_npy`) and only integer and float dtypes get
past it, so a body can neither make the server allocate what it merely claims nor reach the
unpickler.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import re
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt

from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors.batches import (
    FloatBatch,
    InputShape,
    check_dims,
    check_model_shape,
    plural,
    to_float32,
)
from aiaas.ml.tensors.numbers import NUMBER_KINDS, REFUSED_KINDS

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


def decode_npy(body: bytes, *, shape: InputShape, max_rows: int) -> FloatBatch:
    """Decode a ``.npy`` body holding a batch (first axis = examples) of ints or floats.

    The header is parsed here rather than by ``np.load``: np.load allocates the array the
    header claims before reading any data, so a 100-byte body could ask for terabytes. It
    also means object arrays are refused from their header alone; nothing is unpickled.
    """
    check_model_shape(shape, max_rows)
    loc: tuple[str | int, ...] = ("body",)
    dtype, fortran_order, dims, offset = _read_npy_header(body)
    check_dims(dims, shape, max_rows, loc, single=False, from_json=False)
    count = math.prod(dims)
    have = len(body) - offset
    need = count * dtype.itemsize
    if have != need:
        detail = "is truncated" if have < need else f"is followed by {plural(have - need, 'byte')}"
        raise InputInvalid(
            f"the body is not a .npy array: its data {detail} "
            f"(the header promises {plural(need, 'byte')}, {have} follow)",
            loc=loc,
            expected=f"{plural(need, 'byte')} of data",
            got=plural(have, "byte"),
            type="npy_invalid",
        )
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    array = flat.reshape(dims, order="F" if fortran_order else "C")
    return to_float32(array, loc)


def encode_npy(array: npt.ArrayLike) -> bytes:
    """Serialise ``array`` as a standard float32 ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


# --------------------------------------------------------------------------- header


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
    if code in REFUSED_KINDS:
        _refuse_dtype(REFUSED_KINDS[code], descr)
    if code not in NUMBER_KINDS:
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
