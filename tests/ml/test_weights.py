from __future__ import annotations

import io
import json
import os
import pickle
import struct
from typing import Any

import pytest
import torch
from torch import nn

from aiaas.ml.architectures import ARCHITECTURES, build_model, parse_config
from aiaas.ml.errors import NotSafetensors, WeightsMismatch
from aiaas.ml.weights import (
    check_state_dict,
    load_safetensors,
    load_weights_into,
    save_safetensors,
)


def _model(name: str = "mlp") -> nn.Module:
    config = parse_config(name, ARCHITECTURES[name].example_config, max_parameters=10**7)
    return build_model(name, config)


def _raw_file(header: dict[str, Any], data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_round_trip(name: str) -> None:
    source, target = _model(name), _model(name)
    tensors = load_safetensors(save_safetensors(source))
    assert check_state_dict(target, tensors) == []
    load_weights_into(target, tensors)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_half_precision_upload_is_cast_to_float32() -> None:
    source, target = _model(), _model()
    source.half()
    load_weights_into(target, load_safetensors(save_safetensors(source)))
    for key, value in target.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, source.state_dict()[key].float())


def test_pickle_is_refused() -> None:
    with pytest.raises(NotSafetensors):
        load_safetensors(pickle.dumps({"linears.0.weight": [1.0, 2.0]}))


def test_torch_save_zip_is_refused() -> None:
    buffer = io.BytesIO()
    torch.save(_model().state_dict(), buffer)
    assert buffer.getvalue()[:2] == b"PK"
    with pytest.raises(NotSafetensors):
        load_safetensors(buffer.getvalue())


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, os.urandom(4096)])
def test_short_or_random_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(NotSafetensors):
        load_safetensors(data)


def test_truncated_file_is_refused() -> None:
    data = save_safetensors(_model())
    for cut in (len(data) - 1, len(data) // 2, 12):
        with pytest.raises(NotSafetensors):
            load_safetensors(data[:cut])


def test_header_claiming_more_bytes_than_present() -> None:
    data = struct.pack("<Q", 1000) + b'{"a": 1}'
    with pytest.raises(NotSafetensors, match="claims 1000 bytes"):
        load_safetensors(data)


def test_overlapping_offsets() -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    with pytest.raises(NotSafetensors, match="overlaps"):
        load_safetensors(_raw_file(header, b"\x00" * 12))


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 12, "trailing"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8, "needs 12"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\x00" * 8, "order"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 8, "beyond"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8, "covered"),
        ({"a": {"dtype": "F32", "shape": [2]}}, b"\x00" * 8, "missing data_offsets"),
        ({"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8, "dtype"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\x00" * 8, "shape"),
        ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\x00" * 4, "shape"),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
        ({"a": [1, 2]}, b"", "not an object"),
    ],
)
def test_malformed_headers(header: dict[str, Any], data: bytes, match: str) -> None:
    with pytest.raises(NotSafetensors, match=match):
        load_safetensors(_raw_file(header, data))


@pytest.mark.parametrize(
    "header_bytes",
    [b"[1, 2]", b"\xff\xfe{}", b"{not json", b'{"a": NaN}', b'{"a": {}, "a": {}}'],
)
def test_header_not_a_json_object(header_bytes: bytes) -> None:
    with pytest.raises(NotSafetensors):
        load_safetensors(struct.pack("<Q", len(header_bytes)) + header_bytes)


def test_absurd_header_length() -> None:
    with pytest.raises(NotSafetensors, match="implausible"):
        load_safetensors(struct.pack("<Q", 2**63) + b"{}")


def test_metadata_and_empty_tensors_are_accepted() -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "empty": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]},
        "x": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
    }
    tensors = load_safetensors(_raw_file(header, b"\x00" * 4))
    assert tensors["empty"].shape == (0, 3)
    assert tensors["x"].dtype == torch.float16


def test_missing_extra_and_wrong_shape_tensors() -> None:
    model = _model()  # mlp 64 -> 32 -> 10
    tensors = dict(model.state_dict())
    del tensors["linears.1.bias"]
    tensors["linears.0.weight"] = torch.zeros(32, 63)
    tensors["surprise"] = torch.zeros(2, 2)
    problems = check_state_dict(model, tensors)
    assert [(p.name, p.type, p.expected_shape, p.got_shape) for p in problems] == [
        ("linears.0.weight", "shape_mismatch", [32, 64], [32, 63]),
        ("linears.1.bias", "missing", [10], None),
        ("surprise", "unexpected", None, [2, 2]),
    ]
    assert problems[0].to_error() == {
        "loc": ["weights", "linears.0.weight"],
        "msg": "expected shape [32, 64], got [32, 63]",
        "type": "shape_mismatch",
        "expected_shape": [32, 64],
        "got_shape": [32, 63],
    }
    with pytest.raises(WeightsMismatch) as info:
        load_weights_into(model, tensors)
    assert [e["loc"] for e in info.value.errors] == [
        ["weights", "linears.0.weight"],
        ["weights", "linears.1.bias"],
        ["weights", "surprise"],
    ]


def test_integer_tensor_where_float_expected() -> None:
    model = _model()
    tensors = dict(model.state_dict())
    tensors["linears.1.bias"] = torch.zeros(10, dtype=torch.int64)
    problems = check_state_dict(model, load_safetensors(_save(tensors)))
    assert [(p.name, p.type) for p in problems] == [("linears.1.bias", "dtype_mismatch")]


def _save(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    out: bytes = save({k: v.contiguous() for k, v in tensors.items()})
    return out


def test_empty_file_lists_every_expected_tensor() -> None:
    model = _model("rnn")
    tensors = load_safetensors(_save({}))
    assert tensors == {}
    problems = check_state_dict(model, tensors)
    expected = model.state_dict()
    assert [p.name for p in problems] == sorted(expected)
    assert all(p.type == "missing" and p.got_shape is None for p in problems)
    assert {p.name: p.expected_shape for p in problems} == {
        k: list(v.shape) for k, v in expected.items()
    }
