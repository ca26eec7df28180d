"""What the servers are asked: the benchmark's models, their weights and request bodies, and the
outputs every server must answer with, computed here from the same weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from bench.references._model import load_model

MLP_SPEC: dict[str, Any] = {
    "architecture": "mlp",
    "config": {"input_dim": 784, "hidden": [256, 256], "output_dim": 10},
}
CNN_SPEC: dict[str, Any] = {
    "architecture": "cnn",
    "config": {
        "in_channels": 1,
        "height": 28,
        "width": 28,
        "blocks": [{"channels": 8, "kernel": 3}, {"channels": 16, "kernel": 3}],
        "output_dim": 10,
    },
}
JSON = "application/json"
NPY = "application/x-npy"
BINARY = "application/octet-stream"
V2_HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Body:
    path: Path
    content_type: str
    data: bytes
    # Other headers the body needs (the V2 binary body: where its JSON ends).
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Workload:
    """A model, its weights, and request bodies, plus the outputs every server must return."""

    spec: dict[str, Any]
    weights_path: Path
    weights: bytes
    json_body: Body
    npy_body: Body
    v2_body: Body
    expected: npt.NDArray[np.float32]


def make_workload(spec: dict[str, Any], shape: tuple[int, ...], tmp: Path, tag: str) -> Workload:
    from aiaas.ml.architectures import build_model, parse_config
    from aiaas.ml.weights import save_safetensors

    torch.manual_seed(0)
    config = parse_config(spec["architecture"], spec["config"], max_parameters=50_000_000)
    weights = save_safetensors(build_model(spec["architecture"], config))
    weights_path = tmp / f"{tag}.safetensors"
    weights_path.write_bytes(weights)

    # Values with five decimals: 784 of them make the 6.2 KB body of the performance notes.
    rng = np.random.default_rng(0)
    row = np.round(rng.random((1, *shape)), 5).astype(np.float32)
    json_data = json.dumps({"inputs": row.tolist()}, separators=(",", ":")).encode()
    json_path = tmp / f"{tag}.json"
    json_path.write_bytes(json_data)
    npy_path = tmp / f"{tag}.npy"
    np.save(npy_path, row)

    v2_path = tmp / f"{tag}.v2"
    v2_data, json_size = v2_binary_request(row)
    v2_path.write_bytes(v2_data)

    model = load_model(json.dumps(spec), str(weights_path))
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(row)), dim=-1).numpy()
    return Workload(
        spec=spec,
        weights_path=weights_path,
        weights=weights,
        json_body=Body(json_path, JSON, json_data),
        npy_body=Body(npy_path, NPY, npy_path.read_bytes()),
        v2_body=Body(v2_path, BINARY, v2_data, ((V2_HEADER_LENGTH, str(json_size)),)),
        expected=expected,
    )


def v2_binary_request(row: npt.NDArray[np.float32]) -> tuple[bytes, int]:
    """The body tritonclient sends for ``client.infer(model, [input])`` with the rows in binary
    and no outputs named (so every output comes back binary), and the length of its JSON."""
    from tritonclient.http import InferenceServerClient, InferInput

    tensor = InferInput("input", list(row.shape), "FP32")
    tensor.set_data_from_numpy(row, binary_data=True)
    body, json_size = InferenceServerClient.generate_request_body([tensor])
    return body, json_size
