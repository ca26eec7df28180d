"""Every kind of bad upload is refused with its documented status, leaving no row and no file."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.ml.architectures import build_model, parse_config
from aiaas.registry.models import ModelVersion
from aiaas.storage import LocalArtifactStore
from tests.factories import Account, post_version
from tests.helpers import assert_problem
from tests.registry.conftest import example_weights, files_under

Upload = Callable[..., Response]
CreateModel = Callable[..., dict[str, Any]]
MLP = {"input_dim": 64, "hidden": [32], "output_dim": 10}
# The example MLP's state dict, sorted by name.
MLP_SHAPES = {
    "linears.0.bias": [32],
    "linears.0.weight": [32, 64],
    "linears.1.bias": [10],
    "linears.1.weight": [10, 32],
}


def _mlp_state(config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    module = build_model("mlp", parse_config("mlp", config or MLP, max_parameters=10**6))
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def _raw_safetensors(header: dict[str, Any], data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def _split(file: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack("<Q", file[:8])
    header: dict[str, Any] = json.loads(file[8 : 8 + length])
    return header, file[8 + length :]


class _RunsCode:
    """Unpickling this would create the marker file: the server must never unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


def _torch_save(obj: Any, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _header_lies_about_sizes() -> bytes:
    # A tensor declared [32, 64] float32 (8192 bytes) whose offsets span only 4096 bytes.
    header, data = _split(safetensors.torch.save(_mlp_state()))
    begin, _ = header["linears.0.weight"]["data_offsets"]
    header["linears.0.weight"]["data_offsets"] = [begin, begin + 4096]
    return _raw_safetensors(header, data)


def _offsets_beyond_the_data() -> bytes:
    header, data = _split(safetensors.torch.save(_mlp_state()))
    for entry in header.values():
        if isinstance(entry, dict) and "data_offsets" in entry:
            entry["data_offsets"] = [o + 4 for o in entry["data_offsets"]]
    return _raw_safetensors(header, data)


def _header_length_past_the_end() -> bytes:
    file = safetensors.torch.save(_mlp_state())
    return struct.pack("<Q", len(file)) + file[8:]


def _shape_disagrees_with_offsets() -> bytes:
    # The offsets are right for [32, 64] but the header claims [64, 64].
    header, data = _split(safetensors.torch.save(_mlp_state()))
    header["linears.0.weight"]["shape"] = [64, 64]
    return _raw_safetensors(header, data)


NOT_SAFETENSORS: dict[str, Callable[[Path], bytes]] = {
    "pickle": lambda marker: pickle.dumps({"linears.0.weight": _RunsCode(marker)}),
    "torch-save-zip": lambda marker: _torch_save(_mlp_state()),
    "torch-save-zip-with-code": lambda marker: _torch_save({"x": _RunsCode(marker)}),
    "torch-save-legacy-pickle": lambda marker: _torch_save(
        _mlp_state(), _use_new_zipfile_serialization=False
    ),
    "random-bytes": lambda marker: random.Random(7).randbytes(20_000),
    "empty-file": lambda marker: b"",
    "seven-bytes": lambda marker: b"\x02\x00\x00\x00\x00\x00\x00",
    "truncated": lambda marker: safetensors.torch.save(_mlp_state())[:6000],
    "truncated-in-header": lambda marker: safetensors.torch.save(_mlp_state())[:40],
    "header-lies-about-sizes": lambda marker: _header_lies_about_sizes(),
    "offsets-beyond-data": lambda marker: _offsets_beyond_the_data(),
    "header-length-past-end": lambda marker: _header_length_past_the_end(),
    "shape-disagrees-with-offsets": lambda marker: _shape_disagrees_with_offsets(),
    "trailing-garbage": lambda marker: safetensors.torch.save(_mlp_state()) + b"\x00" * 16,
    "header-not-json": lambda marker: struct.pack("<Q", 9) + b"not json!",
}


@pytest.fixture
def assert_nothing_kept(
    count_rows: Callable[[type[Any]], int], store: LocalArtifactStore, artifacts_dir: Path
) -> Callable[[], None]:
    def check() -> None:
        assert count_rows(ModelVersion) == 0
        assert list(store.iter_digests()) == []
        assert files_under(artifacts_dir) == []

    return check


@pytest.mark.parametrize("kind", list(NOT_SAFETENSORS))
def test_not_safetensors_is_refused(
    kind: str,
    tmp_path: Path,
    create_model: CreateModel,
    upload: Upload,
    assert_nothing_kept: Callable[[], None],
) -> None:
    marker = tmp_path / "code-ran"
    create_model()

    response = upload("digits", "mlp", MLP, weights=NOT_SAFETENSORS[kind](marker))

    body = assert_problem(response, 422)
    assert body["detail"] == "weights must be safetensors"
    assert body["errors"][0]["loc"] == ["weights"]
    assert body["errors"][0]["msg"].startswith("weights must be safetensors")
    assert not marker.exists()
    assert_nothing_kept()


def _weights_errors(response: Response) -> dict[str, dict[str, Any]]:
    body = assert_problem(response, 422)
    errors = body["errors"]
    for error in errors:
        assert error["loc"][0] == "weights"
        assert len(error["loc"]) == 2
        assert isinstance(error["msg"], str)
        assert error["msg"]
        assert {"expected_shape", "got_shape"} <= set(error)
    by_name = {e["loc"][1]: e for e in errors}
    assert len(by_name) == len(errors), "one item per tensor"
    return by_name


def test_wrong_shapes_name_each_tensor(
    create_model: CreateModel, upload: Upload, assert_nothing_kept: Callable[[], None]
) -> None:
    create_model()
    narrower = safetensors.torch.save(_mlp_state({**MLP, "hidden": [16]}))

    errors = _weights_errors(upload("digits", "mlp", MLP, weights=narrower))

    assert {name: (e["expected_shape"], e["got_shape"]) for name, e in errors.items()} == {
        "linears.0.bias": ([32], [16]),
        "linears.0.weight": ([32, 64], [16, 64]),
        "linears.1.weight": ([10, 32], [10, 16]),
    }
    assert "[32, 64]" in errors["linears.0.weight"]["msg"]
    assert_nothing_kept()


def test_missing_and_extra_tensors_are_each_named(
    create_model: CreateModel, upload: Upload, assert_nothing_kept: Callable[[], None]
) -> None:
    state = _mlp_state()
    del state["linears.1.bias"]
    state["linears.2.weight"] = torch.zeros(3, 3)
    create_model()

    errors = _weights_errors(upload("digits", "mlp", MLP, weights=safetensors.torch.save(state)))

    assert set(errors) == {"linears.1.bias", "linears.2.weight"}
    missing, extra = errors["linears.1.bias"], errors["linears.2.weight"]
    assert (missing["expected_shape"], missing["got_shape"]) == ([10], None)
    assert "missing" in missing["msg"]
    assert (extra["expected_shape"], extra["got_shape"]) == (None, [3, 3])
    assert "unexpected" in extra["msg"]
    assert_nothing_kept()


def test_empty_safetensors_lists_every_missing_tensor(
    create_model: CreateModel, upload: Upload, assert_nothing_kept: Callable[[], None]
) -> None:
    create_model()

    errors = _weights_errors(upload("digits", "mlp", MLP, weights=safetensors.torch.save({})))

    assert {n: (e["expected_shape"], e["got_shape"]) for n, e in errors.items()} == {
        name: (shape, None) for name, shape in MLP_SHAPES.items()
    }
    assert_nothing_kept()


def test_integer_tensor_where_a_float_is_expected(
    create_model: CreateModel, upload: Upload, assert_nothing_kept: Callable[[], None]
) -> None:
    state = _mlp_state()
    state["linears.1.bias"] = torch.zeros(10, dtype=torch.int64)
    create_model()

    errors = _weights_errors(upload("digits", "mlp", MLP, weights=safetensors.torch.save(state)))

    assert set(errors) == {"linears.1.bias"}
    assert errors["linears.1.bias"]["expected_shape"] == [10]
    assert_nothing_kept()


def test_weights_of_another_family_list_every_difference(
    create_model: CreateModel, upload: Upload, assert_nothing_kept: Callable[[], None]
) -> None:
    cnn_state = safetensors.torch.load(example_weights("cnn"))
    create_model()

    errors = _weights_errors(upload("digits", "mlp", MLP, weights=example_weights("cnn")))

    assert set(errors) == set(MLP_SHAPES) | set(cnn_state)
    for name in MLP_SHAPES:
        assert errors[name]["got_shape"] is None
    for name, tensor in cnn_state.items():
        assert errors[name]["expected_shape"] is None
        assert errors[name]["got_shape"] == list(tensor.shape)
    assert_nothing_kept()


@pytest.fixture
def small_upload_client(settings: Settings, db: Database) -> Iterator[TestClient]:
    """An app whose uploads may be at most 0.05 MB (52,428 bytes)."""
    app = create_app(settings.model_copy(update={"max_upload_mb": 0.05}), database=db)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_oversized_upload_is_refused_with_413(
    small_upload_client: TestClient,
    account: Account,
    create_model: CreateModel,
    assert_nothing_kept: Callable[[], None],
) -> None:
    create_model()
    big = {"input_dim": 256, "hidden": [64], "output_dim": 10}  # 17,098 floats, ~68 KB
    weights = example_weights("mlp", big)
    assert len(weights) > 0.05 * 1024 * 1024
    spec = {"architecture": "mlp", "config": big}

    response = post_version(
        small_upload_client, "digits", spec=spec, weights=weights, headers=account.headers
    )

    body = assert_problem(response, 413)
    assert "52428" in body["detail"]
    assert_nothing_kept()
    # The same app takes an upload under the limit.
    small = post_version(
        small_upload_client,
        "digits",
        spec={"architecture": "mlp", "config": MLP},
        weights=example_weights("mlp"),
        headers=account.headers,
    )
    assert small.status_code == 201, small.text


def test_oversized_chunked_upload_is_refused_with_413(
    small_upload_client: TestClient,
    account: Account,
    create_model: CreateModel,
    assert_nothing_kept: Callable[[], None],
) -> None:
    create_model()
    boundary = "aiaas-test-boundary"
    spec = json.dumps({"architecture": "mlp", "config": MLP})
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{spec}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="weights"; '
            'filename="model.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + b"\x00" * 80_000
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = small_upload_client.post(
        "/v1/models/digits/versions",
        content=chunks(),
        headers={
            **account.headers,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )

    assert_problem(response, 413)
    assert_nothing_kept()


def test_a_refused_upload_leaves_earlier_versions_alone(
    app: FastAPI,
    create_model: CreateModel,
    upload: Upload,
    count_rows: Callable[[type[Any]], int],
    store: LocalArtifactStore,
) -> None:
    create_model()
    good = upload("digits").json()

    assert_problem(upload("digits", weights=b"\x80\x04not safetensors"), 422)
    assert_problem(upload("digits", weights=safetensors.torch.save({})), 422)

    assert count_rows(ModelVersion) == 1
    assert list(store.iter_digests()) == [good["sha256"]]
    assert upload("digits").json()["version"] == 2
