"""Safetensors upload handling: strict format checks, layout checks, loading.

Uploaded weights are untrusted. Only the safetensors format is accepted and
``torch.load``/``pickle`` are never used, so a file cannot run code on the server. The
header is checked here before the library sees it, so every malformed file is refused
with a readable reason instead of an arbitrary library error.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import safetensors.torch
import torch
from torch import nn

from aiaas.ml.errors import NotSafetensors, WeightsErrorItem, WeightsMismatch

# The byte sizes of the dtypes torch can represent; sub-byte dtypes (F4, F6) are refused.
_DTYPE_SIZES: Final[dict[str, int]] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# A header entry takes ~100 bytes, so this allows far more tensors than any model we build
# while keeping a hostile header from costing much to decode.
MAX_HEADER_BYTES: Final = 16 * 1024 * 1024
_METADATA_KEY: Final = "__metadata__"


def _refuse(reason: str) -> NoReturn:
    raise NotSafetensors(reason)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicated tensor name would be read differently by different parsers.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _refuse(f"the header names {key!r} twice")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    _refuse(f"the header contains {name}, which is not JSON")


def _read_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Parse the JSON header; return it and the length of the data section after it."""
    if len(data) < 8:
        _refuse(f"{len(data)} bytes is too short to hold the 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len < 2 or header_len > MAX_HEADER_BYTES:
        _refuse(f"implausible header length {header_len}")
    if 8 + header_len > len(data):
        _refuse(f"the header claims {header_len} bytes but only {len(data) - 8} follow")
    try:
        text = data[8 : 8 + header_len].decode("utf-8")
    except UnicodeDecodeError:
        _refuse("the header is not UTF-8")
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        _refuse("the header is not valid JSON")
    if not isinstance(header, dict):
        _refuse("the header is not a JSON object")
    return header, len(data) - 8 - header_len


def _is_count(value: Any) -> bool:
    # bool is an int subclass; true/false must not pass as sizes or offsets.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_layout(header: dict[str, Any], data_len: int) -> None:
    metadata = header.get(_METADATA_KEY)
    if _METADATA_KEY in header and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        _refuse("__metadata__ must map strings to strings")
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == _METADATA_KEY:
            continue
        if not isinstance(info, dict):
            _refuse(f"tensor {name!r}: entry is not an object")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in info:
                _refuse(f"tensor {name!r}: missing {field}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPE_SIZES:
            _refuse(f"tensor {name!r}: unsupported dtype")
        if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
            _refuse(f"tensor {name!r}: shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            _refuse(f"tensor {name!r}: data_offsets must be two non-negative integers")
        begin, end = offsets
        if begin > end:
            _refuse(f"tensor {name!r}: data_offsets [{begin}, {end}] are out of order")
        if end > data_len:
            _refuse(f"tensor {name!r}: ends at byte {end}, beyond the {data_len}-byte data")
        expected = math.prod(shape) * _DTYPE_SIZES[dtype]
        if end - begin != expected:
            _refuse(
                f"tensor {name!r}: {end - begin} bytes of data, but shape {shape} "
                f"of {dtype} needs {expected}"
            )
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin < position:
            _refuse(f"tensor {name!r} overlaps the tensor before it")
        if begin > position:
            _refuse(f"bytes {position}..{begin} of the data are not covered by any tensor")
        position = end
    if position != data_len:
        _refuse(f"{data_len - position} trailing bytes are not covered by any tensor")


def load_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    """Parse a safetensors file; raise ``NotSafetensors`` for anything else."""
    header, data_len = _read_header(data)
    _check_layout(header, data_len)
    try:
        tensors: dict[str, torch.Tensor] = safetensors.torch.load(data)
    except Exception as exc:
        # The library is the final word; whatever it refuses is not a usable file.
        raise NotSafetensors(f"unreadable: {str(exc)[:200]}") from None
    return tensors


def save_safetensors(module: nn.Module) -> bytes:
    return save_state(module.state_dict())


def save_state(state: Mapping[str, torch.Tensor]) -> bytes:
    out: bytes = safetensors.torch.save(
        {k: v.detach().cpu().contiguous() for k, v in state.items()}
    )
    return out


@dataclass(frozen=True)
class TensorProblem:
    """Why one uploaded tensor does not fit the model (or why one is missing)."""

    name: str
    msg: str
    expected_shape: list[int] | None
    got_shape: list[int] | None
    type: str

    def to_error(self) -> WeightsErrorItem:
        return {
            "loc": ["weights", self.name],
            "msg": self.msg,
            "type": self.type,
            "expected_shape": self.expected_shape,
            "got_shape": self.got_shape,
        }


def _problem(
    name: str, expected: torch.Tensor | None, got: torch.Tensor | None
) -> TensorProblem | None:
    exp_shape = list(expected.shape) if expected is not None else None
    got_shape = list(got.shape) if got is not None else None
    if got is None:
        msg = f"missing tensor of shape {exp_shape}"
        return TensorProblem(name, msg, exp_shape, None, "missing")
    if expected is None:
        msg = "unexpected tensor: the model has none of that name"
        return TensorProblem(name, msg, None, got_shape, "unexpected")
    if exp_shape != got_shape:
        msg = f"expected shape {exp_shape}, got {got_shape}"
        return TensorProblem(name, msg, exp_shape, got_shape, "shape_mismatch")
    if expected.is_floating_point() and not got.is_floating_point():
        msg = f"expected a floating-point tensor, got {got.dtype}"
        return TensorProblem(name, msg, exp_shape, got_shape, "dtype_mismatch")
    if not expected.is_floating_point() and got.dtype != expected.dtype:
        msg = f"expected dtype {expected.dtype}, got {got.dtype}"
        return TensorProblem(name, msg, exp_shape, got_shape, "dtype_mismatch")
    return None


def check_state_dict(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> list[TensorProblem]:
    """Every way ``tensors`` differs from ``module``'s layout, sorted by tensor name."""
    expected = module.state_dict()
    problems = (
        _problem(name, expected.get(name), tensors.get(name))
        for name in sorted(set(expected) | set(tensors))
    )
    return [p for p in problems if p is not None]


def load_weights_into(module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load after a clean check, casting floats (e.g. float16 uploads) to the module's dtype."""
    problems = check_state_dict(module, tensors)
    if problems:
        raise WeightsMismatch([p.to_error() for p in problems])
    expected = module.state_dict()
    cast = {name: tensor.to(dtype=expected[name].dtype) for name, tensor in tensors.items()}
    module.load_state_dict(cast, strict=True)
    return module
