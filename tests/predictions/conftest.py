from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import save_safetensors
from tests.conftest import Account
from tests.helpers import bearer

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
MLP_CONFIG = {"input_dim": 4, "hidden": [8], "output_dim": 3}


@dataclass
class Deployed:
    name: str
    key: str
    module: torch.nn.Module
    headers: dict[str, str]

    def expected(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: np.ndarray = self.module(torch.from_numpy(x)).softmax(-1).numpy()
        return out


def upload_version(
    client: TestClient,
    account: Account,
    name: str,
    architecture: str,
    config: dict[str, Any],
    *,
    seed: int = 0,
    labels: list[str] | None = None,
) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = build_model(architecture, parse_config(architecture, config, max_parameters=10**8))
    module.eval()
    spec: dict[str, Any] = {"architecture": architecture, "config": config}
    if labels is not None:
        spec["labels"] = labels
    response = client.post(
        f"/v1/models/{name}/versions",
        data={"spec": json.dumps(spec)},
        files={"weights": ("w.safetensors", save_safetensors(module), "application/octet-stream")},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return module


@pytest.fixture
def deploy(
    client: TestClient, account: Account, make_key: Callable[..., dict[str, Any]]
) -> Callable[..., Deployed]:
    def make(
        name: str = "iris",
        architecture: str = "mlp",
        config: dict[str, Any] | None = None,
        task: str = "classification",
        labels: list[str] | None = None,
    ) -> Deployed:
        body: dict[str, Any] = {"name": name, "task": task, "labels": labels}
        created = client.post("/v1/models", json=body, headers=account.headers)
        assert created.status_code == 201, created.text
        module = upload_version(client, account, name, architecture, config or MLP_CONFIG)
        key = make_key(["predict", "models:read"])["key"]
        return Deployed(name, key, module, bearer(key))

    return make


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
