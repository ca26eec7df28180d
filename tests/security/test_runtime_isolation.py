"""Two versions with byte-identical weights but another computation never share a runtime.

Account A serves the bytes as a ReLU classifier (softmax outputs), account B the same bytes as a
tanh regressor (raw outputs). Whichever is loaded first, each gets its own outputs: in embedded
mode (the gateway's own runtime cache and batchers) and in distributed mode (a real worker).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import save_safetensors
from tests.factories import Account, create_model, post_version, register, unique

CLASSIFIER = {"input_dim": 4, "hidden": [16], "output_dim": 3, "activation": "relu"}
REGRESSOR = {"input_dim": 4, "hidden": [16], "output_dim": 3, "activation": "tanh"}
ROWS = np.array([[5.1, -3.5, 1.4, 0.2], [-6.7, 3.0, 5.2, -2.3]], dtype=np.float32)


def publish_bytes(
    client: TestClient, owner: Account, *, task: str, config: dict[str, Any], data: bytes
) -> str:
    """A model of ``owner``'s whose one version is these bytes read with this config."""
    name: str = create_model(client, owner, unique("iso"), task=task)["name"]
    spec = {"architecture": "mlp", "config": config}
    uploaded = post_version(client, name, spec=spec, weights=data, headers=owner.headers)
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

    owner_a, owner_b = register(client), register(client)
    a, b = owner_a.headers, owner_b.headers
    a_model = publish_bytes(client, owner_a, task="classification", config=CLASSIFIER, data=data)
    b_model = publish_bytes(client, owner_b, task="regression", config=REGRESSOR, data=data)
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
