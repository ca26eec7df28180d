"""Open Inference Protocol fixtures: an app on a committed database (sync predictions kept for
feedback are written from a thread of their own), and request bodies built as clients send
them."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from aiaas.v2.tensors import DATATYPES
from tests.predictions.conftest import IRIS_LABELS

__all__ = ["IRIS_LABELS", "ROWS", "binary_request", "json_request", "read_answer"]

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@pytest.fixture
def client(live_client: TestClient) -> TestClient:
    return live_client


def json_request(
    array: np.ndarray, datatype: str = "FP32", *, nested: bool = False, **fields: Any
) -> dict[str, Any]:
    """A KServe-style JSON request with ``array`` as its one input ``input``."""
    data = array.tolist() if nested else array.ravel().tolist()
    tensor = {"name": "input", "shape": list(array.shape), "datatype": datatype, "data": data}
    return {"inputs": [tensor], **fields}


def binary_request(
    array: np.ndarray, datatype: str = "FP32", **fields: Any
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a request with ``array`` in binary after the JSON, as
    tritonclient sends it."""
    raw = np.ascontiguousarray(array, dtype=DATATYPES[datatype]).tobytes()
    tensor = {
        "name": "input",
        "shape": list(array.shape),
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    header = orjson.dumps({"inputs": [tensor], **fields})
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def read_answer(body: bytes, header_length: str | None) -> dict[str, Any]:
    """An answer's outputs by name, binary ones read back with the protocol's layout: numbers
    as their datatype, BYTES as length-prefixed UTF-8."""
    length = int(header_length) if header_length is not None else len(body)
    answer: dict[str, Any] = orjson.loads(body[:length])
    offset = length
    outputs: dict[str, Any] = {}
    for output in answer["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is None:
            outputs[output["name"]] = output["data"]
            continue
        raw = body[offset : offset + size]
        offset += size
        if output["datatype"] == "BYTES":
            items, at = [], 0
            while at < len(raw):
                n = int.from_bytes(raw[at : at + 4], "little")
                items.append(raw[at + 4 : at + 4 + n].decode())
                at += 4 + n
            outputs[output["name"]] = items
        else:
            outputs[output["name"]] = np.frombuffer(
                raw, dtype=DATATYPES[output["datatype"]]
            ).tolist()
    assert offset == len(body), "bytes after the last binary output"
    answer["by_name"] = outputs
    return answer
