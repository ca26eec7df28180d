"""The V2 tensor codec: every datatype in JSON and in binary, binary parts that do not add up,
shapes that do not fit, BYTES in binary, and what a malformed request gets from the route."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from tritonclient.http import InferResult
from tritonclient.utils import deserialize_bytes_tensor

from aiaas.errors import InvalidInput
from aiaas.ml.tensors import FloatBatch
from aiaas.v2.tensors import (
    DATATYPES,
    InferRequest,
    OutputRequest,
    Tensor,
    decode_input,
    encode_bytes,
    encode_response,
    parse_request,
)
from tests.factories import Account, api_key, publish
from tests.helpers import bearer
from tests.v2.conftest import binary_request, json_request

MODEL_SHAPE = (3,)

# Per datatype, rows whose values only that datatype holds as they are: the extremes of the
# integer types (a signed/unsigned or width mix-up changes them), fractions for the floats.
SAMPLES: dict[str, list[list[Any]]] = {
    "UINT8": [[0, 255, 7], [128, 1, 2]],
    "UINT16": [[0, 65535, 7], [40000, 1, 2]],
    "UINT32": [[0, 2**32 - 1, 7], [3_000_000_000, 1, 2]],
    "UINT64": [[0, 2**64 - 1, 7], [2**63, 1, 2]],
    "INT8": [[-128, 127, 7], [-1, 1, 2]],
    "INT16": [[-32768, 32767, 7], [-1, 1, 2]],
    "INT32": [[-(2**31), 2**31 - 1, 7], [-1, 1, 2]],
    "INT64": [[-(2**63), 2**63 - 1, 7], [-1, 1, 2]],
    "FP16": [[1.5, -2.25, 65504.0], [0.099975586, 3.0, -1.0]],
    "FP32": [[1.5, -2.25, 3.0e38], [0.1, 3.0, -1.0]],
    "FP64": [[1.5, -2.25, 1.0e30], [0.1, 3.0, -1.0]],
}


def decode(
    body: bytes, headers: dict[str, str] | None = None, shape: tuple[int, ...] = MODEL_SHAPE
) -> FloatBatch:
    length = (headers or {}).get("Inference-Header-Content-Length")
    request = parse_request(body, header_length=length.encode() if length else None)
    return decode_input(request.inputs[0], shape=shape, max_rows=100)


def refused(pattern: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        decode(body, headers)


def test_every_numeric_datatype_is_covered() -> None:
    assert set(SAMPLES) == set(DATATYPES) - {"BOOL"}


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_numeric_datatype_becomes_the_float32_batch(datatype: str, binary: bool) -> None:
    values = np.array(SAMPLES[datatype], dtype=DATATYPES[datatype])
    if binary:
        batch = decode(*binary_request(values, datatype))
    else:
        batch = decode(orjson.dumps(json_request(values, datatype)))
    assert batch.dtype == np.float32
    assert batch.shape == (2, 3)
    # As /v1 casts a .npy body of that dtype.
    np.testing.assert_array_equal(batch, values.astype(np.float32))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_bool_is_refused_as_npy_booleans_are(binary: bool) -> None:
    values = np.array([[True, False, True]])
    if binary:
        body, headers = binary_request(values, "BOOL")
    else:
        body, headers = orjson.dumps(json_request(values, "BOOL")), None
    refused(r"inputs\[0\] holds booleans \(dtype bool\); send integers or floats", body, headers)


def test_bytes_and_unknown_datatypes_are_refused() -> None:
    request = json_request(np.array([[1.0, 2.0, 3.0]]), "BYTES")
    refused(r"inputs\[0\] is BYTES; this model takes numbers", orjson.dumps(request))
    request = json_request(np.array([[1.0, 2.0, 3.0]]), "BF16")
    refused(r"inputs\[0\]\.datatype 'BF16' is not one of BOOL, UINT8", orjson.dumps(request))


def test_nested_json_data_is_read_row_major() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    flat = decode(orjson.dumps(json_request(values)))
    nested = decode(orjson.dumps(json_request(values, nested=True)))
    np.testing.assert_array_equal(flat, values)
    np.testing.assert_array_equal(nested, values)


# ---- binary parts of the wrong size


def test_a_binary_part_shorter_than_its_shape_is_refused() -> None:
    body, headers = binary_request(np.ones((1, 3), np.float32))
    header = orjson.loads(body[: int(headers["Inference-Header-Content-Length"])])
    header["inputs"][0]["parameters"]["binary_data_size"] = 11
    head = orjson.dumps(header)
    short = head + np.ones(3, np.float32).tobytes()[:11]
    refused(
        r"FP32 of shape \[1, 3\]: 12 bytes of binary data, but its binary_data_size is 11",
        short,
        {"Inference-Header-Content-Length": str(len(head))},
    )


def test_bytes_left_over_after_the_inputs_are_refused() -> None:
    body, headers = binary_request(np.ones((1, 3), np.float32))
    refused(
        r"13 bytes of binary data follow the JSON, but the inputs' binary_data_size add up to 12",
        body + b"\x00",
        headers,
    )


def test_a_binary_size_past_the_body_is_refused() -> None:
    body, headers = binary_request(np.ones((1, 3), np.float32))
    refused(
        r"8 bytes of binary data follow the JSON, but the inputs' binary_data_size add up to 12",
        body[:-4],
        headers,
    )


def test_the_header_length_must_fit_the_body_and_be_a_number() -> None:
    body, _ = binary_request(np.ones((1, 3), np.float32))
    refused(r"is 9999, but the body has", body, {"Inference-Header-Content-Length": "9999"})
    refused(
        r"must be the length of the JSON in bytes", body, {"Inference-Header-Content-Length": "x"}
    )


def test_binary_data_without_the_header_length_is_refused() -> None:
    body, headers = binary_request(np.ones((1, 3), np.float32))
    head = body[: int(headers["Inference-Header-Content-Length"])]
    refused(r"binary inputs but no Inference-Header-Content-Length", head)


def test_binary_non_finite_values_are_refused_where_they_are() -> None:
    values = np.array([[1.0, np.nan, 3.0]], np.float32)
    refused(r"inputs must be finite; inputs\[0\]\[0\]\[1\] is NaN", *binary_request(values))


# ---- shapes and data that do not agree


def test_data_and_shape_must_agree() -> None:
    request = json_request(np.ones((2, 3)))
    request["inputs"][0]["data"] = request["inputs"][0]["data"][:-1]
    refused(r"holds 5 numbers, but shape \[2, 3\] needs 6", orjson.dumps(request))
    nested = json_request(np.ones((3, 2)), nested=True)
    nested["inputs"][0]["shape"] = [2, 3]
    refused(r"is nested as \[3, 2\], but its shape is \[2, 3\]", orjson.dumps(nested))


def test_a_shape_the_model_does_not_take_is_refused_in_v1_words() -> None:
    request = json_request(np.ones((2, 4)))
    refused(r"inputs\[0\] must have shape \[n, 3\]", orjson.dumps(request))
    request = json_request(np.ones((0, 3)))
    refused(r"must hold at least one example", orjson.dumps(request))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([[1, 2, 3], [4, 5]], "ragged"),
        (["1", "2", "3"], "it holds strings"),
        ([1.0, None, 3.0], "it holds nulls"),
        ([1.0, True, 3.0], "it holds booleans"),
        ({"a": 1}, "must be a list of numbers, got an object"),
    ],
)
def test_json_data_must_be_a_regular_list_of_numbers(data: Any, expected: str) -> None:
    request = json_request(np.ones((1, 3)))
    request["inputs"][0]["data"] = data
    refused(expected, orjson.dumps(request))


def test_integer_datatypes_take_integers_in_their_range() -> None:
    request = json_request(np.ones((1, 3)), "INT32")
    request["inputs"][0]["data"] = [1.5, 2, 3]
    refused(r"is INT32: its data must be integers", orjson.dumps(request))
    request = json_request(np.array([[1, 200, 3]]), "INT8")
    refused(r"beyond the INT8 range \[-128, 127\]", orjson.dumps(request))
    request = json_request(np.array([[1, -1, 3]]), "UINT16")
    refused(r"beyond the UINT16 range \[0, 65535\]", orjson.dumps(request))


FP32_INPUT: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [1, 3]}
OK_INPUTS = {"inputs": [{**FP32_INPUT, "data": [1, 2, 3]}]}


@pytest.mark.parametrize(
    ("request_json", "expected"),
    [
        (b"{bad", "not valid JSON"),
        (b"[]", "must be a JSON object, got a list"),
        ({"inputs": []}, "inputs must be a non-empty list"),
        ({"inputs": [FP32_INPUT]}, "neither data"),
        ({"inputs": [{**FP32_INPUT, "data": [], "shape": [-1, 3]}]}, "non-negative integers"),
        ({"inputs": [{**FP32_INPUT, "data": [1, 2, 3], "datatype": 32}]}, "datatype must be"),
        ({**OK_INPUTS, "id": 7}, "id must be a string, got a number"),
        ({**OK_INPUTS, "parameters": {"binary_data_output": 1}}, "must be true or false"),
        ({**OK_INPUTS, "outputs": {"name": "p"}}, "outputs must be a list"),
        (
            {**OK_INPUTS, "outputs": [{"name": "p", "parameters": {"classification": 2}}]},
            "classification is not supported",
        ),
        ({**OK_INPUTS, "outputs": [{"name": "p"}, {"name": "p"}]}, "asked for twice"),
    ],
)
def test_malformed_requests_are_refused(
    request_json: bytes | dict[str, Any], expected: str
) -> None:
    body = request_json if isinstance(request_json, bytes) else orjson.dumps(request_json)
    with pytest.raises(InvalidInput, match=expected):
        parse_request(body)


def test_a_well_formed_request_is_read() -> None:
    request = parse_request(orjson.dumps(OK_INPUTS))
    assert request.inputs[0].data == [1, 2, 3]
    assert (request.id, request.outputs, request.binary_output) == (None, None, False)


def test_compressed_bodies_are_refused_by_name() -> None:
    body = orjson.dumps(json_request(np.ones((1, 3))))
    with pytest.raises(InvalidInput, match="Content-Encoding gzip is not supported"):
        parse_request(body, content_encoding=b"gzip")
    assert parse_request(body, content_encoding=b"identity").inputs[0].name == "input"


def test_requested_outputs_and_their_binary_flags() -> None:
    request = parse_request(
        orjson.dumps(
            {
                "id": "r1",
                "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": [
                    {"name": "predictions", "parameters": {"binary_data": True}},
                    {"name": "probabilities"},
                ],
                "parameters": {"binary_data_output": False},
            }
        )
    )
    assert request.id == "r1"
    assert request.outputs == (
        OutputRequest("predictions", True),
        OutputRequest("probabilities", None),
    )
    assert request.outputs is not None
    assert [request.wants_binary(output) for output in request.outputs] == [True, False]
    everything = InferRequest(id=None, inputs=(), outputs=None, binary_output=True)
    assert everything.wants_binary(OutputRequest("probabilities", None)) is True


# ---- answers


def test_bytes_are_length_prefixed_little_endian_as_triton_reads_them() -> None:
    labels = ["setosa", "é", ""]
    raw = encode_bytes(labels)
    assert raw == b"\x06\x00\x00\x00setosa\x02\x00\x00\x00\xc3\xa9\x00\x00\x00\x00"
    assert deserialize_bytes_tensor(raw).tolist() == [label.encode() for label in labels]


def test_answers_are_read_by_tritonclient_in_binary_and_json() -> None:
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    tensors = [
        Tensor("probabilities", "FP32", (2, 2), probabilities),
        Tensor("predictions", "BYTES", (2,), ["versicolor", "setosa"]),
        Tensor("indices", "INT64", (2,), np.array([1, 0], np.int64)),
    ]
    for binary in (True, False):
        body, length = encode_response(
            model_name="iris",
            model_version="3",
            request_id="abc",
            outputs=[(tensor, binary) for tensor in tensors],
        )
        assert (length is not None) is binary
        result = InferResult.from_response_body(body, header_length=length)
        response = result.get_response()
        assert (response["model_name"], response["model_version"], response["id"]) == (
            "iris",
            "3",
            "abc",
        )
        np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
        assert result.as_numpy("indices").tolist() == [1, 0]
        predictions = result.as_numpy("predictions").tolist()
        # tritonclient hands binary BYTES back as bytes, JSON ones as str.
        assert [p.decode() if isinstance(p, bytes) else p for p in predictions] == [
            "versicolor",
            "setosa",
        ]


# ---- through the route


def test_a_malformed_body_gets_the_protocols_400_and_nothing_is_recorded(
    client: TestClient, account: Account
) -> None:
    name = publish(
        client,
        account,
        labels=["a", "b", "c"],
        config={"input_dim": 3, "hidden": [4], "output_dim": 3},
    ).name
    assert client.patch(
        f"/v1/models/{name}", json={"capture_inputs": True}, headers=account.headers
    ).is_success
    headers = bearer(api_key(client, account, ["predict", "models:read"])["key"])
    url = f"/v2/models/{name}/infer"
    bad = [
        client.post(url, content=b'{"inputs": [', headers=headers),
        client.post(url, content=orjson.dumps(json_request(np.ones((1, 4)))), headers=headers),
        client.post(
            url, content=b"{}", headers={**headers, "Inference-Header-Content-Length": "x"}
        ),
    ]
    for response in bad:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"error"}
    assert "not valid JSON" in bad[0].json()["error"]
    assert re.search(r"must have shape \[n, 3\]", bad[1].json()["error"])

    # No prediction was made or kept: none counted, none stored for feedback; the usage shows
    # three refused requests with no rows, as /v1 counts a refused body.
    metrics = client.get("/metrics").text
    assert f'aiaas_predictions_total{{model="{name}"' not in metrics
    assert client.get("/v1/predictions", headers=headers).json()["data"] == []
    usage = client.get("/v1/usage", headers=headers).json()
    (model,) = usage["models"]
    assert model["totals"]["errors"] == 3
    assert model["totals"]["rows"] == 0

    good = client.post(url, content=orjson.dumps(json_request(np.ones((1, 3)))), headers=headers)
    assert good.status_code == 200, good.text
    kept = client.get("/v1/predictions", headers=headers).json()["data"]
    assert [job["id"] for job in kept] == [good.json()["parameters"]["prediction_id"]]
