"""The real ``tritonclient[http]`` against a live ``aiaas serve``: health, metadata, readiness,
inference in JSON and binary both ways, FP32 and FP64 inputs, answers equal to ``/v1``'s, API
keys passed as tritonclient passes headers, tenancy; and a KServe-style JSON request made
with curl. Loopback only."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.http import (
    InferenceServerClient,
    InferInput,
    InferRequestedOutput,
    InferResult,
)
from tritonclient.utils import InferenceServerException

from tests.factories import api_key, publish, register
from tests.helpers import bearer, live_server
from tests.v2.conftest import IRIS_LABELS, ROWS

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class World:
    base: str
    key: str
    labelled: str  # answers label names: BYTES predictions
    indexed: str  # answers class indices: INT64 predictions
    private: str  # another account's

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)

    @property
    def host(self) -> str:
        return self.base.removeprefix("http://")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("v2-live")
    with live_server(home, {"AIAAS_DEMO_MODELS": "false"}) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            owner, other = register(http), register(http)
            world = World(
                base=base,
                key=api_key(http, owner, ["predict"])["key"],
                labelled=publish(http, owner, labels=IRIS_LABELS).name,
                indexed=publish(http, owner, seed=1).name,
                private=publish(http, other, seed=2).name,
            )
        yield world


@pytest.fixture
def triton(world: World) -> Iterator[InferenceServerClient]:
    client = InferenceServerClient(url=world.host)
    yield client
    client.close()


def v1_predict(world: World, name: str, rows: np.ndarray) -> dict[str, Any]:
    response = httpx.post(
        f"{world.base}/v1/models/{name}/predict",
        json={"inputs": rows.tolist()},
        headers=world.headers,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def as_text(values: np.ndarray) -> list[str]:
    # tritonclient gives BYTES read from binary as bytes, from JSON as str.
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def test_server_health_and_metadata(triton: InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "aiaas"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(triton: InferenceServerClient, world: World) -> None:
    metadata = triton.get_model_metadata(world.labelled, headers=world.headers)
    assert metadata["name"] == world.labelled
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("probabilities", "FP32"),
        ("predictions", "BYTES"),
    ]
    versioned = triton.get_model_metadata(world.indexed, "1", headers=world.headers)
    assert versioned["outputs"][1]["datatype"] == "INT64"
    assert triton.is_model_ready(world.labelled, headers=world.headers)
    assert triton.is_model_ready(world.labelled, "1", headers=world.headers)
    assert not triton.is_model_ready(world.labelled, "2", headers=world.headers)
    assert not triton.is_model_ready(world.private, headers=world.headers)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_infer_answers_what_v1_answers(
    triton: InferenceServerClient, world: World, datatype: str, binary_in: bool, binary_out: bool
) -> None:
    rows = ROWS.astype(np.float64 if datatype == "FP64" else np.float32)
    tensor = InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary_in)
    outputs = [
        InferRequestedOutput("probabilities", binary_data=binary_out),
        InferRequestedOutput("predictions", binary_data=binary_out),
    ]
    result = triton.infer(
        world.labelled, [tensor], outputs=outputs, request_id="r-7", headers=world.headers
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        world.labelled,
        "1",
        "r-7",
    )
    v1 = v1_predict(world, world.labelled, rows)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    np.testing.assert_array_equal(probabilities, np.array(v1["outputs"], np.float32))
    assert as_text(result.as_numpy("predictions")) == v1["predictions"]


def test_default_outputs_come_back_binary_with_int64_indices(
    triton: InferenceServerClient, world: World
) -> None:
    tensor = InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    result = triton.infer(world.indexed, [tensor], headers=world.headers)
    outputs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert set(outputs) == {"probabilities", "predictions"}
    assert all("binary_data_size" in o["parameters"] for o in outputs.values())
    v1 = v1_predict(world, world.indexed, ROWS)
    predictions = result.as_numpy("predictions")
    assert predictions.dtype == np.int64
    assert predictions.tolist() == v1["predictions"]
    expected = np.array(v1["outputs"], np.float32)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), expected)


def test_keys_and_tenancy_as_tritonclient_sees_them(
    triton: InferenceServerClient, world: World
) -> None:
    tensor = InferInput("input", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    with pytest.raises(InferenceServerException) as hidden:
        triton.infer(world.private, [tensor], headers=world.headers)
    assert hidden.value.status() == "404"
    assert hidden.value.message() == f"No model named '{world.private}'."
    with pytest.raises(InferenceServerException) as metadata:
        triton.get_model_metadata(world.private, headers=world.headers)
    assert metadata.value.status() == "404"
    with pytest.raises(InferenceServerException) as anonymous:
        triton.infer(world.labelled, [tensor])
    assert anonymous.value.status() == "401"
    bad = InferInput("input", [2, 3], "FP32")
    bad.set_data_from_numpy(ROWS[:, :3].copy())
    with pytest.raises(InferenceServerException) as wrong_shape:
        triton.infer(world.labelled, [bad], headers=world.headers)
    assert wrong_shape.value.status() == "400"
    assert "must have shape [n, 4]" in str(wrong_shape.value.message())


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_a_kserve_json_request_with_curl(world: World) -> None:
    request = {
        "id": "curl-1",
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROWS.tolist()}],
    }
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            f"{world.base}/v2/models/{world.labelled}/infer",
            "-H",
            f"Authorization: Bearer {world.key}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(request),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    answer = json.loads(done.stdout)
    assert (answer["id"], answer["model_name"], answer["model_version"]) == (
        "curl-1",
        world.labelled,
        "1",
    )
    outputs = {o["name"]: o for o in answer["outputs"]}
    v1 = v1_predict(world, world.labelled, ROWS)
    assert outputs["probabilities"]["shape"] == [2, 3]
    assert outputs["probabilities"]["datatype"] == "FP32"
    got = np.array(outputs["probabilities"]["data"], np.float32).reshape(2, 3)
    np.testing.assert_array_equal(got, np.array(v1["outputs"], np.float32))
    assert outputs["predictions"] == {
        "name": "predictions",
        "datatype": "BYTES",
        "shape": [2],
        "data": v1["predictions"],
    }
    # tritonclient reads the same JSON answer the same way.
    parsed = InferResult.from_response_body(done.stdout)
    assert as_text(parsed.as_numpy("predictions")) == v1["predictions"]
