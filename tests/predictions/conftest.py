"""Prediction fixtures: a deployed model with a predict key, and the answers it should give."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tests.factories import Account, create_model, upload_version
from tests.helpers import bearer

IRIS_LABELS = ["setosa", "versicolor", "virginica"]


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
        create_model(client, account, name, task=task, labels=labels)
        module = upload_version(client, account, name, architecture, config)
        key = make_key(["predict", "models:read"])["key"]
        return Deployed(name, key, module, bearer(key))

    return make


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
