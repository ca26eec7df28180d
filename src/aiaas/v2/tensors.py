"""The Open Inference Protocol's tensors: inference requests read (JSON tensors and the binary
tensor data extension), inputs turned into float32 batches, and answers written.

A request is a JSON object, optionally followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header says where the JSON ends, and each binary input's
``parameters.binary_data_size`` how many of the bytes that follow are its own, in the order of
the inputs. Answers take the same form: outputs asked for in binary (``binary_data`` on the
output, or ``binary_data_output`` on the request) follow the JSON, BYTES elements each behind a
4-byte little-endian length, as Triton writes them.

The protocol's datatypes are only names for numpy dtypes here. Which of them a model takes, how
they become float32, and every check of a batch against the model (shape, rows, finiteness) are
``aiaas.ml.tensors``' rules, the ones ``/v1`` applies to ``.npy`` bodies, so both protocols
refuse the same inputs in the same words. Every refusal is an ``InvalidInput``: the protocol's
400.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import numpy as np
import numpy.typing as npt
import orjson

from aiaas.errors import InvalidInput, from_core
from aiaas.ml.errors import InputInvalid
from aiaas.ml.tensors import (
    FloatBatch,
    InputShape,
    check_dtype,
    describe_json,
    holds_bool,
    validate_batch,
)

DATATYPES: Final[Mapping[str, np.dtype[Any]]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""The protocol's fixed-size datatypes as numpy dtypes (little-endian, as the binary extension
sends them). ``BYTES`` has no fixed size and is handled apart; ``BF16`` has no numpy dtype and
is not taken."""

BYTES: Final = "BYTES"

HEADER_LENGTH: Final = b"inference-header-content-length"
"""The header that says where the JSON of a request or an answer ends and binary data begins."""

_KNOWN = ", ".join([*DATATYPES, BYTES])


# The objects made per request are plain slotted classes: a frozen dataclass's __init__ goes
# through object.__setattr__ for each field, which the hot path would pay on every request.


@dataclass(slots=True)
class InputTensor:
    """One input of a request, as sent: ``data`` is the JSON list, or the input's own bytes
    when ``binary``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    binary: bool


@dataclass(frozen=True, slots=True)
class OutputRequest:
    """An output the request asks for; ``binary`` None leaves it to the request's default."""

    name: str
    binary: bool | None


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: tuple[InputTensor, ...]
    # None: every output the model has.
    outputs: tuple[OutputRequest, ...] | None
    binary_output: bool

    def wants_binary(self, output: OutputRequest) -> bool:
        """Whether ``output`` goes in binary: its own ``binary_data``, else the request's
        ``binary_data_output``."""
        return self.binary_output if output.binary is None else output.binary


@dataclass(slots=True)
class Tensor:
    """An output to answer with: numbers as an array, BYTES as a list of strings."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: npt.NDArray[Any] | list[str]


@dataclass(frozen=True, slots=True)
class _InputHead:
    """An input as the request's JSON describes it; ``size`` is its ``binary_data_size``, None
    when its data is in the JSON."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    size: int | None


@dataclass(frozen=True, slots=True)
class _Head:
    """What a request's JSON says, apart from the binary data that follows it."""

    id: str | None
    inputs: tuple[_InputHead, ...]
    outputs: tuple[OutputRequest, ...] | None
    binary_output: bool
    binary_size: int


# --------------------------------------------------------------------------- requests


def parse_request(
    body: bytes, *, header_length: bytes | None = None, content_encoding: bytes | None = None
) -> InferRequest:
    """Read a request's JSON and split the binary data after it between its inputs;
    ``header_length`` and ``content_encoding`` are the values of those headers, if sent.

    Nothing here knows the model: ``decode_input`` checks an input against it."""
    if content_encoding is not None and content_encoding.strip().lower() != b"identity":
        _refuse(
            f"Content-Encoding {content_encoding.decode('latin-1')} is not supported; "
            "send the body uncompressed"
        )
    if header_length is None:
        head = _read_head(body)
        json_length = len(body)
        if head.binary_size:
            _refuse(
                "the request has binary inputs but no Inference-Header-Content-Length header "
                "saying where its JSON ends"
            )
    else:
        json_length = _json_length(header_length, len(body))
        raw = body[:json_length]
        head = _cached_head(raw) if json_length <= _CACHED_HEAD_BYTES else _read_head(raw)
        if json_length + head.binary_size != len(body):
            _refuse(
                f"{len(body) - json_length} bytes of binary data follow the JSON, but the "
                f"inputs' binary_data_size add up to {head.binary_size}"
            )
    view = memoryview(body)
    offset = json_length
    inputs = []
    for item in head.inputs:
        if item.size is None:
            inputs.append(InputTensor(item.name, item.datatype, item.shape, item.data, False))
        else:
            data = view[offset : offset + item.size]
            inputs.append(InputTensor(item.name, item.datatype, item.shape, data, True))
            offset += item.size
    return InferRequest(head.id, tuple(inputs), head.outputs, head.binary_output)


# A client sends the same JSON before its binary data with every request (tritonclient's has
# no id unless asked): read once, it is a dictionary lookup. Refused heads raise, and
# exceptions are never cached. Heads with data in them are read every time beyond this size.
_CACHED_HEAD_BYTES: Final = 4096


def _read_head(header: bytes) -> _Head:
    try:
        parsed = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        _refuse(f"the request is not valid JSON: {exc}")
    if type(parsed) is not dict:
        _refuse(f"the request must be a JSON object, got {describe_json(parsed)}")
    ident = parsed.get("id")
    if ident is not None and type(ident) is not str:
        _refuse(f"id must be a string, got {describe_json(ident)}")
    parameters = _parameters(parsed, "the request")
    binary_output = _flag(parameters, "binary_data_output", "parameters")
    inputs = parsed.get("inputs")
    if type(inputs) is not list or not inputs:
        _refuse("inputs must be a non-empty list of tensors")
    heads = tuple(_input_head(item, index) for index, item in enumerate(inputs))
    return _Head(
        id=ident,
        inputs=heads,
        outputs=_outputs(parsed.get("outputs")),
        binary_output=bool(binary_output),
        binary_size=sum(head.size or 0 for head in heads),
    )


_cached_head = functools.lru_cache(maxsize=256)(_read_head)


def _json_length(header: bytes, size: int) -> int:
    if not header.strip().isdigit():
        _refuse(
            "Inference-Header-Content-Length must be the length of the JSON in bytes, "
            f"got {header.decode('latin-1')!r}"
        )
    length = int(header)
    if length > size:
        _refuse(f"Inference-Header-Content-Length is {length}, but the body has {size} bytes")
    return length


def _input_head(item: Any, index: int) -> _InputHead:
    where = f"inputs[{index}]"
    if type(item) is not dict:
        _refuse(f"{where} must be an object, got {describe_json(item)}")
    name = item.get("name")
    if type(name) is not str:
        _refuse(f"{where}.name must be a string")
    datatype = item.get("datatype")
    if type(datatype) is not str:
        _refuse(f"{where}.datatype must be a string, one of {_KNOWN}")
    shape = item.get("shape")
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        _refuse(f"{where}.shape must be a list of non-negative integers")
    size = _parameters(item, where).get("binary_data_size")
    if size is None:
        if "data" not in item:
            _refuse(f"{where} has neither data nor parameters.binary_data_size")
        return _InputHead(name, datatype, tuple(shape), item["data"], None)
    if type(size) is not int or size < 0:
        _refuse(f"{where}.parameters.binary_data_size must be a non-negative integer")
    if "data" in item:
        _refuse(f"{where} has both data and parameters.binary_data_size; send one")
    return _InputHead(name, datatype, tuple(shape), None, size)


def _outputs(raw: Any) -> tuple[OutputRequest, ...] | None:
    if raw is None:
        return None
    if type(raw) is not list:
        _refuse("outputs must be a list of objects with a name")
    found: list[OutputRequest] = []
    for index, item in enumerate(raw):
        where = f"outputs[{index}]"
        if type(item) is not dict or type(item.get("name")) is not str:
            _refuse(f"{where} must be an object with a string name")
        parameters = _parameters(item, where)
        if "classification" in parameters:
            _refuse(
                f"{where}.parameters.classification is not supported; ask for the "
                "probabilities and predictions outputs"
            )
        if any(known.name == item["name"] for known in found):
            _refuse(f"{where}: output '{item['name']}' is asked for twice")
        binary = _flag(parameters, "binary_data", f"{where}.parameters")
        found.append(OutputRequest(item["name"], binary))
    return tuple(found)


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = item.get("parameters", {})
    if type(parameters) is not dict:
        _refuse(f"{where}'s parameters must be an object")
    return parameters


def _flag(parameters: dict[str, Any], name: str, where: str) -> bool | None:
    value = parameters.get(name)
    if value is not None and type(value) is not bool:
        _refuse(f"{where}.{name} must be true or false")
    return value


# --------------------------------------------------------------------------- inputs


def decode_input(
    tensor: InputTensor, *, shape: InputShape, max_rows: int, index: int = 0
) -> FloatBatch:
    """The input as the float32 batch a model of input ``shape`` (without the batch axis)
    takes: integer and other float datatypes are cast as ``/v1`` casts ``.npy`` bodies."""
    where = f"inputs[{index}]"
    loc = ("inputs", index)
    if tensor.datatype == BYTES:
        _refuse(f"{where} is BYTES; this model takes numbers (FP32, or an integer or float type)")
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        _refuse(f"{where}.datatype {tensor.datatype!r} is not one of {_KNOWN}")
    try:
        # BOOL is refused here, in the words .npy bodies of booleans get.
        check_dtype(dtype, loc)
        count = math.prod(tensor.shape)
        if tensor.binary:
            array = _binary_array(tensor, dtype, count, where)
        else:
            array = _json_array(tensor, dtype, count, where)
        return validate_batch(array, shape=shape, max_rows=max_rows, loc=loc)
    except InputInvalid as exc:
        raise from_core(exc) from None


def _binary_array(
    tensor: InputTensor, dtype: np.dtype[Any], count: int, where: str
) -> npt.NDArray[Any]:
    need = count * dtype.itemsize
    if len(tensor.data) != need:
        _refuse(
            f"{where} is {tensor.datatype} of shape {list(tensor.shape)}: {need} bytes of "
            f"binary data, but its binary_data_size is {len(tensor.data)}"
        )
    # Read-only over the request's bytes; validate_batch copies it into the float32 batch.
    return np.frombuffer(tensor.data, dtype=dtype, count=count).reshape(tensor.shape)


def _json_array(
    tensor: InputTensor, dtype: np.dtype[Any], count: int, where: str
) -> npt.NDArray[Any]:
    data = tensor.data
    if type(data) is not list:
        _refuse(f"{where}.data must be a list of numbers, got {describe_json(data)}")
    try:
        array: npt.NDArray[Any] = np.array(data)
    except (ValueError, TypeError, OverflowError):
        _refuse(f"{where}.data is ragged: its nested lists differ in length or depth")
    kind = array.dtype.kind
    if kind == "b" or (kind in "iuf" and array.size and holds_bool(data, array)):
        _refuse(f"{where}.data must hold numbers; it holds booleans")
    if kind not in "iuf":
        what = "strings" if kind == "U" else "nulls, objects or integers beyond 64 bits"
        _refuse(f"{where}.data must hold numbers; it holds {what}")
    if array.ndim > 1 and array.shape != tensor.shape:
        _refuse(
            f"{where}.data is nested as {list(array.shape)}, but its shape is {list(tensor.shape)}"
        )
    if array.size != count:
        _refuse(
            f"{where}.data holds {array.size} numbers, but shape {list(tensor.shape)} needs {count}"
        )
    array = array.reshape(tensor.shape)
    if dtype.kind in "iu":
        if kind == "f":
            # numpy reads a list holding integers past the int64 range (UINT64's upper half)
            # as floats: read them exactly instead, or refuse the fractions.
            exact = np.array(data, dtype=object).reshape(tensor.shape)
            if any(type(value) is not int for value in exact.flat):
                _refuse(f"{where} is {tensor.datatype}: its data must be integers")
            try:
                return exact.astype(dtype)
            except OverflowError:
                _refuse_range(tensor.datatype, dtype, where)
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            _refuse_range(tensor.datatype, dtype, where)
    # JSON numbers of a float datatype go straight to float32, as /v1's JSON numbers do: they
    # are decimal text, and passing them through FP16 first would only lose digits.
    return array


def _refuse_range(datatype: str, dtype: np.dtype[Any], where: str) -> NoReturn:
    info = np.iinfo(dtype)
    _refuse(f"{where}.data holds numbers beyond the {datatype} range [{info.min}, {info.max}]")


# --------------------------------------------------------------------------- answers


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[tuple[Tensor, bool]],
    parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON when binary outputs follow it (None when
    the JSON is the whole body). ``outputs`` pairs each tensor with whether it goes binary."""
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        answer["id"] = request_id
    if parameters:
        answer["parameters"] = parameters
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        if binary:
            raw = _binary_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            values = tensor.values
            entry["data"] = values if isinstance(values, list) else values.ravel()
        entries.append(entry)
    answer["outputs"] = entries
    header = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _binary_bytes(tensor: Tensor) -> bytes:
    values = tensor.values
    if isinstance(values, list):
        return encode_bytes(values)
    dtype = DATATYPES[tensor.datatype]
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def encode_bytes(values: Sequence[str]) -> bytes:
    """BYTES elements in binary: each one's UTF-8 behind its length, 4 bytes little-endian."""
    parts: list[bytes] = []
    for value in values:
        data = value.encode()
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)


# --------------------------------------------------------------------------- wording


def _refuse(msg: str) -> NoReturn:
    raise InvalidInput(msg)
