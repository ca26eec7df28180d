"""Two versions with byte-identical weights but another computation never share a runtime.

Account A serves the bytes as a ReLU classifier (softmax outputs), account B the same bytes as a
tanh regressor (raw outputs). Whichever is loaded first, each gets its own outputs: in embedded
mode (the gateway's own runtime cache and batchers) and in distributed mode (a real worker).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import save_safetensors
from tests.helpers import PASSWORD, bearer

CLASSIFIER = {"input_dim": 4, "hidden": [16], "output_dim": 3, "activation": "relu"}
REGRESSOR = {"input_dim": 4, "hidden": [16], "output_dim": 3, "activation": "tanh"}
ROWS = np.array([[5.1, -3.5, 1.4, 0.2], [-6.7, 3.0, 5.2, -2.3]], dtype=np.float32)


def signed_up(client: TestClient) -> dict[str, str]:
    email = f"iso-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD}
    assert client.post("/v1/auth/register", json=body).status_code == 201
    token = client.post("/v1/auth/login", json=body).json()["access_token"]
    return bearer(token)


def publish(
    client: TestClient, headers: dict[str, str], *, task: str, config: dict[str, Any], data: bytes
) -> str:
    name = f"iso-{uuid.uuid4().hex[:8]}"
    created = client.post("/v1/models", json={"name": name, "task": task}, headers=headers)
    assert created.status_code == 201, created.text
    spec = json.dumps({"architecture": "mlp", "config": config})
    uploaded = client.post(
        f"/v1/models/{name}/versions",
        data={"spec": spec},
        files={"weights": ("w.safetensors", data, "application/octet-stream")},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    return name


def expected(config: dict[str, Any], state: dict[str, torch.Tensor], *, softmax: bool) -> Any:
    module = build_model("mlp", parse_config("mlp", config, max_parameters=10**6)).eval()
    module.load_state_dict(state)
    with torch.inference_mode():
        out = module(torch.from_numpy(ROWS))
        return (out.softmax(-1) if softmax else out).numpy()


def check_isolation(client: TestClient, *, classifier_first: bool) -> None:
    torch.manual_seed(uuid.uuid4().int % 2**31)  # fresh bytes: no runtime of an earlier test
    module = build_model("mlp", parse_config("mlp", CLASSIFIER, max_parameters=10**6))
    data = save_safetensors(module)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    a, b = signed_up(client), signed_up(client)
    a_model = publish(client, a, task="classification", config=CLASSIFIER, data=data)
    b_model = publish(client, b, task="regression", config=REGRESSOR, data=data)
    a_sha = client.get(f"/v1/models/{a_model}/versions/1", headers=a).json()["sha256"]
    b_sha = client.get(f"/v1/models/{b_model}/versions/1", headers=b).json()["sha256"]
    assert a_sha == b_sha  # the same stored bytes

    want = {
        a_model: expected(CLASSIFIER, state, softmax=True),
        b_model: expected(REGRESSOR, state, softmax=False),
    }
    assert not np.allclose(want[a_model], want[b_model], atol=1e-3)
    order = [(a_model, a), (b_model, b)] if classifier_first else [(b_model, b), (a_model, a)]
    for _ in range(2):  # the second round is served by runtimes loaded in the first
        for name, headers in order:
            response = client.post(
                f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=headers
            )
            assert response.status_code == 200, response.text
            got = np.asarray(response.json()["outputs"], dtype=np.float32)
            np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "classifier_first", [True, False], ids=["classifier-first", "regressor-first"]
)
def test_embedded_mode_keeps_each_computation(client: TestClient, classifier_first: bool) -> None:
    check_isolation(client, classifier_first=classifier_first)


@pytest.mark.parametrize(
    "classifier_first", [True, False], ids=["classifier-first", "regressor-first"]
)
def test_distributed_mode_keeps_each_computation(
    gateway: TestClient, worker: object, classifier_first: bool
) -> None:
    check_isolation(gateway, classifier_first=classifier_first)
