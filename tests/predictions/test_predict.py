"""The sync predict route in embedded mode: shapes, content types, versions, refusals."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tests.factories import MLP_CONFIG, Account, upload_version
from tests.helpers import assert_problem, bearer
from tests.predictions.conftest import IRIS_LABELS, Deployed, npy

Deploy = Callable[..., Deployed]
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


def test_json_predict_returns_probabilities_and_labels(client: TestClient, deploy: Deploy) -> None:
    model = deploy(labels=IRIS_LABELS)
    response = client.post(
        f"/v1/models/{model.name}/predict", json={"inputs": ROWS.tolist()}, headers=model.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "model", "version", "outputs", "predictions"}
    assert body["model"] == "iris"
    assert body["version"] == 1
    outputs = np.array(body["outputs"], dtype=np.float32)
    np.testing.assert_allclose(outputs, model.expected(ROWS), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs.sum(axis=1), 1.0, rtol=1e-5)
    assert body["predictions"] == [IRIS_LABELS[i] for i in outputs.argmax(axis=1)]


def test_one_example_is_answered_as_a_list_of_one(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    body = client.post(
        f"/v1/models/{model.name}/predict", json={"inputs": ROWS[0].tolist()}, headers=model.headers
    ).json()
    assert len(body["outputs"]) == 1
    assert isinstance(body["predictions"][0], int)


def test_npy_in_and_out(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    response = client.post(
        f"/v1/models/{model.name}/predict",
        content=npy(ROWS.astype(np.float64)),
        headers={
            **model.headers,
            "Content-Type": "application/x-npy",
            "Accept": "application/x-npy",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    assert response.headers["aiaas-version"] == "1"
    outputs = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, model.expected(ROWS), rtol=1e-5, atol=1e-6)


def test_regression_outputs_are_the_predictions(client: TestClient, deploy: Deploy) -> None:
    model = deploy(name="house", task="regression", config={"input_dim": 4, "output_dim": 1})
    body = client.post(
        f"/v1/models/{model.name}/predict", json={"inputs": ROWS.tolist()}, headers=model.headers
    ).json()
    assert body["predictions"] == body["outputs"]
    with torch.inference_mode():
        expected = model.module(torch.from_numpy(ROWS)).numpy()
    np.testing.assert_allclose(np.array(body["outputs"]), expected, rtol=1e-5, atol=1e-6)


def test_version_parameter_takes_numbers_and_aliases(
    client: TestClient, deploy: Deploy, account: Account
) -> None:
    model = deploy()
    second = upload_version(client, account, model.name, "mlp", MLP_CONFIG, seed=1)
    url = f"/v1/models/{model.name}/predict"
    latest = client.post(url, json={"inputs": ROWS.tolist()}, headers=model.headers).json()
    assert latest["version"] == 2  # no production alias: latest
    with torch.inference_mode():
        expected = second(torch.from_numpy(ROWS)).softmax(-1).numpy()
    np.testing.assert_allclose(np.array(latest["outputs"]), expected, rtol=1e-5, atol=1e-6)

    client.put(
        f"/v1/models/{model.name}/aliases/production", json={"version": 1}, headers=account.headers
    )
    default = client.post(url, json={"inputs": ROWS.tolist()}, headers=model.headers).json()
    assert default["version"] == 1  # production, once set, is the default
    for ref, number in (("1", 1), ("2", 2), ("latest", 2), ("production", 1)):
        body = client.post(
            url, params={"version": ref}, json={"inputs": ROWS.tolist()}, headers=model.headers
        ).json()
        assert body["version"] == number, ref


BAD_JSON: list[tuple[str, Any]] = [
    ("wrong width", [[1.0, 2.0, 3.0]]),
    ("wrong rank", [[[1.0, 2.0, 3.0, 4.0]]]),
    ("boolean", [[1.0, True, 3.0, 4.0]]),
    ("string", [[1.0, "2", 3.0, 4.0]]),
    ("null", [[1.0, None, 3.0, 4.0]]),
    ("ragged", [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]),
    ("empty batch", []),
    ("object", {"a": 1}),
]


@pytest.mark.parametrize(("case", "inputs"), BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_bad_json_inputs_get_422(
    client: TestClient, deploy: Deploy, case: str, inputs: Any
) -> None:
    model = deploy()
    response = client.post(
        f"/v1/models/{model.name}/predict", json={"inputs": inputs}, headers=model.headers
    )
    body = assert_problem(response, 422)
    assert body["errors"], body


def test_non_finite_values_get_422(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    url = f"/v1/models/{model.name}/predict"
    raw = b'{"inputs": [[1e400, 1.0, 2.0, 3.0]]}'
    headers = {**model.headers, "Content-Type": "application/json"}
    assert_problem(client.post(url, content=raw, headers=headers), 422)
    nan = ROWS.copy()
    nan[1, 2] = np.nan
    npy_headers = {**model.headers, "Content-Type": "application/x-npy"}
    assert_problem(client.post(url, content=npy(nan), headers=npy_headers), 422)


def test_too_many_rows_get_422(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    rows = np.zeros((1025, 4), dtype=np.float32)
    body = assert_problem(
        client.post(
            f"/v1/models/{model.name}/predict",
            content=npy(rows),
            headers={**model.headers, "Content-Type": "application/x-npy"},
        ),
        422,
    )
    assert "1024" in str(body)


def test_object_npy_is_refused_without_unpickling(
    client: TestClient, deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = deploy()
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("user data was unpickled")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    headers = {**model.headers, "Content-Type": "application/x-npy"}
    url = f"/v1/models/{model.name}/predict"
    assert_problem(client.post(url, content=buffer.getvalue(), headers=headers), 422)
    assert_problem(client.post(url, content=b"not an npy file", headers=headers), 422)
    assert_problem(client.post(url, content=npy(ROWS.astype(bool)), headers=headers), 422)


def test_other_content_types_get_415(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    response = client.post(
        f"/v1/models/{model.name}/predict",
        content=b"1,2,3,4",
        headers={**model.headers, "Content-Type": "text/csv"},
    )
    assert_problem(response, 415)


def test_unknown_model_or_version_is_404(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    body = {"inputs": ROWS.tolist()}
    assert_problem(client.post("/v1/models/nope/predict", json=body, headers=model.headers), 404)
    for ref in ("7", "staging"):
        response = client.post(
            f"/v1/models/{model.name}/predict",
            params={"version": ref},
            json=body,
            headers=model.headers,
        )
        assert_problem(response, 404)


def test_body_over_the_predict_limit_is_413(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    big = b'{"inputs": [' + b"0.0," * (3 * 1024 * 1024) + b"0.0]}"
    response = client.post(
        f"/v1/models/{model.name}/predict",
        content=big,
        headers={**model.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 413)


def test_credentials_and_scope_are_checked(
    client: TestClient,
    deploy: Deploy,
    make_key: Callable[..., dict[str, Any]],
    make_account: Callable[..., Account],
) -> None:
    model = deploy()
    url = f"/v1/models/{model.name}/predict"
    body = {"inputs": ROWS.tolist()}
    response = client.post(url, json=body)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(client.post(url, json=body, headers=bearer("aiaas_sk_nope")), 401)
    read_only = make_key(["models:read"])["key"]
    problem = assert_problem(client.post(url, json=body, headers=bearer(read_only)), 403)
    assert problem["required_scope"] == "predict"
    stranger = make_account()
    assert_problem(client.post(url, json=body, headers=stranger.headers), 404)


def test_revoked_key_is_refused_at_once_on_the_predict_path(
    client: TestClient, deploy: Deploy, account: Account
) -> None:
    model = deploy()
    url = f"/v1/models/{model.name}/predict"
    body = {"inputs": ROWS.tolist()}
    assert client.post(url, json=body, headers=model.headers).status_code == 200
    keys = client.get("/v1/api-keys", headers=account.headers).json()["data"]
    key_id = next(k["id"] for k in keys if model.key.startswith(k["prefix"]))
    assert client.delete(f"/v1/api-keys/{key_id}", headers=account.headers).status_code == 204
    assert_problem(client.post(url, json=body, headers=model.headers), 401)


def test_prediction_metrics(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    for _ in range(3):
        client.post(
            f"/v1/models/{model.name}/predict",
            json={"inputs": ROWS.tolist()},
            headers=model.headers,
        )
    text = client.get("/metrics").text
    assert 'aiaas_predictions_total{model="iris",status="succeeded",version="1"} 3.0' in text
    assert "aiaas_batch_size_count" in text
    assert 'aiaas_prediction_latency_seconds_count{stage="total"} 3.0' in text
    assert "aiaas_model_cache_misses_total 1.0" in text
    assert 'aiaas_worker_device{device="cpu"} 1.0' in text


def test_batching_knobs_are_set_per_version(
    client: TestClient, deploy: Deploy, account: Account
) -> None:
    model = deploy()
    url = f"/v1/models/{model.name}/versions/1"
    assert client.get(url, headers=account.headers).json()["max_batch_size"] is None
    changed = client.patch(
        url, json={"max_batch_size": 8, "max_delay_ms": 2.5}, headers=account.headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_batch_size"], changed.json()["max_delay_ms"]) == (8, 2.5)
    for bad in ({"max_batch_size": 0}, {"max_delay_ms": -1}, {"max_batch_size": "big"}):
        assert_problem(client.patch(url, json=bad, headers=account.headers), 422)
    assert_problem(client.patch(url, json={"max_batch_size": 4}, headers=model.headers), 403)
    reset = client.patch(url, json={"max_batch_size": None}, headers=account.headers).json()
    assert reset["max_batch_size"] is None
    assert reset["max_delay_ms"] == 2.5
    body = {"inputs": ROWS.tolist()}
    assert (
        client.post(
            f"/v1/models/{model.name}/predict", json=body, headers=model.headers
        ).status_code
        == 200
    )


def test_predict_requests_are_counted_under_the_route_template(
    client: TestClient, deploy: Deploy
) -> None:
    model = deploy()
    body = {"inputs": ROWS.tolist()}
    client.post(f"/v1/models/{model.name}/predict", json=body, headers=model.headers)
    client.post("/v1/models/other-name/predict", json=body, headers=model.headers)
    text = client.get("/metrics").text
    assert (
        'aiaas_http_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"}'
        in text
    )
    assert 'route="/v1/models/{name}/predict",status="404"' in text
    assert "other-name" not in text.split("aiaas_predictions_total")[0]


def test_chunked_predict_body_over_the_limit_is_413(client: TestClient, deploy: Deploy) -> None:
    model = deploy()

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(9 * 16):
            yield b"0.0," * 16384
        yield b"0.0]}"

    response = client.post(
        f"/v1/models/{model.name}/predict",
        content=chunks(),
        headers={**model.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_paths_that_only_look_like_predict_fall_through(client: TestClient, deploy: Deploy) -> None:
    model = deploy()
    response = client.post("/v1/models/a/b/predict", json={}, headers=model.headers)
    assert_problem(response, 404)
    assert_problem(client.get(f"/v1/models/{model.name}/predict", headers=model.headers), 405)
