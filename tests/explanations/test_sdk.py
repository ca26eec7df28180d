"""``client.models.explain`` against the app itself: the SDK's requests go, through an
``httpx.MockTransport``, to the embedded gateway's real route."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from aiaas.client import AiaasError, AsyncClient, Client
from tests.factories import Account, api_key, publish
from tests.predictions.conftest import IRIS_LABELS

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def _forward(app_client: TestClient) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        answer = app_client.request(
            request.method,
            str(request.url),
            content=request.content,
            headers=dict(request.headers),
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handle)


def test_the_sdk_explains_with_json_and_npy(client: TestClient, account: Account) -> None:
    name, _ = publish(client, account, labels=IRIS_LABELS)
    key = api_key(client, account, ["predict"])["key"]
    sdk = Client(base_url="http://testserver", api_key=key, transport=_forward(client))
    as_lists = sdk.models.explain(name, ROWS.tolist(), method="saliency", target="virginica")
    as_array = sdk.models.explain(name, ROWS, method="saliency", target="virginica")
    for result in (as_lists, as_array):
        assert result.attributions.shape == ROWS.shape
        assert result.target == ["virginica", "virginica"]
        assert result.method == "saliency"
        assert result.version == 1
        assert result.model == name
        assert result.completeness_gap is None
    np.testing.assert_array_equal(as_lists.attributions, as_array.attributions)
    default = sdk.models.explain(name, ROWS)
    assert default.method == "integrated_gradients"
    assert default.target == default.predictions
    assert default.completeness_gap is not None
    assert len(default.completeness_gap) == 2
    with pytest.raises(AiaasError) as refused:
        sdk.models.explain(name, ROWS, method="occlusion")
    assert refused.value.status == 422
    assert refused.value.errors == [{"loc": ["query", "method"], "msg": refused.value.detail}]


def test_the_async_sdk_explains(client: TestClient, account: Account) -> None:
    name, _ = publish(client, account)
    key = api_key(client, account, ["predict"])["key"]

    async def run() -> np.ndarray:
        transport = _forward(client)
        async with AsyncClient(
            base_url="http://testserver", api_key=key, transport=transport
        ) as sdk:
            result = await sdk.models.explain(name, ROWS, method="saliency", target=1)
            return result.attributions

    assert asyncio.run(run()).shape == ROWS.shape
