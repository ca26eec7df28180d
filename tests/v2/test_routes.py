"""The /v2 routes in process: metadata, readiness, inference and its outputs, versions and
aliases, keys, scopes and tenancy, and the errors, limits and metrics /v1 predict has too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.main import create_app
from aiaas.migrate import downgrade, upgrade
from aiaas.serving.spec import ServingSpec
from tests.conftest import scratch_database
from tests.factories import Account, api_key, publish, register, unique, upload_version
from tests.helpers import bearer
from tests.v2.conftest import IRIS_LABELS, ROWS, binary_request, json_request, read_answer

Keys = Callable[..., dict[str, str]]


@pytest.fixture
def keys(client: TestClient, account: Account) -> Keys:
    """Headers with a new API key of ``account``'s (or ``owner``'s) holding these scopes."""

    def make(*scopes: str, owner: Account | None = None) -> dict[str, str]:
        return bearer(api_key(client, owner or account, list(scopes))["key"])

    return make


def v1_predict(client: TestClient, name: str, headers: dict[str, str], **params: str) -> Any:
    response = client.post(
        f"/v1/models/{name}/predict",
        json={"inputs": ROWS.tolist()},
        headers=headers,
        params=params,
    )
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: Any, status: int) -> str:
    """The protocol's error answer: this status, JSON, one string field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    error: str = body["error"]
    return error


def test_server_metadata_and_health_need_no_key(client: TestClient) -> None:
    metadata = client.get("/v2")
    assert metadata.status_code == 200
    assert metadata.json() == {
        "name": "aiaas",
        "version": metadata.json()["version"],
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_server_is_not_ready_while_the_schema_is_behind_the_code(
    settings: Settings, test_database_url: str | None, tmp_path: Path
) -> None:
    """The protocol's readiness is ``/readyz``'s: a schema behind the code is not ready."""
    scratch = scratch_database(test_database_url, tmp_path)
    try:
        upgrade(scratch.url)
        downgrade(scratch.url, "-1")
        behind = settings.model_copy(update={"database_url": scratch.url})
        with TestClient(create_app(behind)) as client:
            error = error_of(client.get("/v2/health/ready"), 503)
            assert client.get("/v2/health/live").json() == {"live": True}
        assert "schema" in error
        assert "run aiaas db upgrade" in error
    finally:
        scratch.drop()


def test_model_metadata_describes_the_default_version(
    client: TestClient, account: Account, keys: Keys
) -> None:
    name = publish(client, account, labels=IRIS_LABELS).name
    upload_version(client, account, name, config={"input_dim": 4, "hidden": [8], "output_dim": 3})
    headers = keys("models:read")
    metadata = client.get(f"/v2/models/{name}", headers=headers).json()
    assert metadata == {
        "name": name,
        "versions": ["1", "2"],
        "platform": "pytorch",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "predictions", "datatype": "BYTES", "shape": [-1]},
        ],
    }
    assert client.get(f"/v2/models/{name}/versions/1", headers=headers).json() == metadata
    ready = client.get(f"/v2/models/{name}/versions/2/ready", headers=headers)
    assert ready.json() == {"name": name, "ready": True}
    error_of(client.get(f"/v2/models/{name}/versions/3/ready", headers=headers), 404)


def test_outputs_per_task_and_variable_axes_in_metadata(
    client: TestClient, account: Account, keys: Keys
) -> None:
    headers = keys("predict")
    indexed = publish(client, account).name
    outputs = client.get(f"/v2/models/{indexed}", headers=headers).json()["outputs"]
    assert outputs[1] == {"name": "predictions", "datatype": "INT64", "shape": [-1]}
    regression = publish(
        client, account, task="regression", config={"input_dim": 4, "output_dim": 2}
    ).name
    outputs = client.get(f"/v2/models/{regression}", headers=headers).json()["outputs"]
    assert outputs == [{"name": "predictions", "datatype": "FP32", "shape": [-1, 2]}]
    rnn = {"cell": "gru", "input_size": 2, "hidden_size": 4, "seq_len": None, "output_dim": 3}
    sequences = publish(client, account, architecture="rnn", config=rnn).name
    inputs = client.get(f"/v2/models/{sequences}", headers=headers).json()["inputs"]
    assert inputs == [{"name": "input", "datatype": "FP32", "shape": [-1, -1, 2]}]


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_infer_answers_what_v1_answers(
    client: TestClient, account: Account, keys: Keys, binary_in: bool, binary_out: bool
) -> None:
    name = publish(client, account, labels=IRIS_LABELS).name
    headers = keys("predict")
    fields: dict[str, Any] = {"id": "req-1", "parameters": {"binary_data_output": binary_out}}
    if binary_in:
        body, extra = binary_request(ROWS, **fields)
    else:
        body, extra = orjson.dumps(json_request(ROWS, **fields)), {}
    response = client.post(f"/v2/models/{name}/infer", content=body, headers={**headers, **extra})
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    if binary_out:
        assert response.headers["content-type"] == "application/octet-stream"
        assert length is not None
    else:
        assert response.headers["content-type"] == "application/json"
        assert length is None
    answer = read_answer(response.content, length)
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (name, "1", "req-1")
    shapes = {output["name"]: output["shape"] for output in answer["outputs"]}
    assert shapes == {"probabilities": [2, 3], "predictions": [2]}
    v1 = v1_predict(client, name, headers)
    got = np.array(answer["by_name"]["probabilities"], np.float32).reshape(2, 3)
    np.testing.assert_array_equal(got, np.array(v1["outputs"], np.float32))
    assert answer["by_name"]["predictions"] == v1["predictions"]
    assert "parameters" not in answer  # nothing kept for feedback: no prediction id to give


def test_only_the_outputs_asked_for_each_in_its_form(
    client: TestClient, account: Account, keys: Keys
) -> None:
    name = publish(client, account).name
    headers = keys("predict")
    outputs = [{"name": "predictions", "parameters": {"binary_data": True}}]
    body, extra = binary_request(ROWS, outputs=outputs)
    response = client.post(f"/v2/models/{name}/infer", content=body, headers={**headers, **extra})
    answer = read_answer(response.content, response.headers["inference-header-content-length"])
    assert [output["name"] for output in answer["outputs"]] == ["predictions"]
    assert answer["outputs"][0]["datatype"] == "INT64"
    assert answer["by_name"]["predictions"] == v1_predict(client, name, headers)["predictions"]
    assert "id" not in answer

    mixed = [
        {"name": "predictions"},
        {"name": "probabilities", "parameters": {"binary_data": True}},
    ]
    body = orjson.dumps(json_request(ROWS, outputs=mixed))
    response = client.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    answer = read_answer(response.content, response.headers["inference-header-content-length"])
    assert ["data" in output for output in answer["outputs"]] == [True, False]

    unknown = orjson.dumps(json_request(ROWS, outputs=[{"name": "logits"}]))
    error = error_of(client.post(f"/v2/models/{name}/infer", content=unknown, headers=headers), 400)
    assert error == "this model has no output 'logits'; it gives probabilities, predictions"


def test_regression_predictions_are_the_outputs(
    client: TestClient, account: Account, keys: Keys
) -> None:
    model = publish(client, account, task="regression", config={"input_dim": 4, "output_dim": 2})
    headers = keys("predict")
    body = orjson.dumps(json_request(ROWS, datatype="FP64", nested=True))
    answer = client.post(f"/v2/models/{model.name}/infer", content=body, headers=headers).json()
    (predictions,) = answer["outputs"]
    assert (predictions["name"], predictions["datatype"], predictions["shape"]) == (
        "predictions",
        "FP32",
        [2, 2],
    )
    with torch.inference_mode():
        expected = model.module(torch.from_numpy(ROWS)).numpy()
    got = np.array(predictions["data"], np.float32).reshape(2, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    v1 = np.array(v1_predict(client, model.name, headers)["outputs"], np.float32)
    np.testing.assert_array_equal(got, v1)


def test_versions_resolve_as_v1s_version_parameter(
    client: TestClient, account: Account, keys: Keys
) -> None:
    name = publish(client, account).name
    upload_version(client, account, name, seed=1)
    headers = keys("predict")
    body = orjson.dumps(json_request(ROWS))

    def served(url: str) -> str:
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        version: str = response.json()["model_version"]
        return version

    assert served(f"/v2/models/{name}/infer") == "2"  # latest without a production alias
    assert client.put(
        f"/v1/models/{name}/aliases/production", json={"version": 1}, headers=account.headers
    ).is_success
    assert served(f"/v2/models/{name}/infer") == "1"
    assert served(f"/v2/models/{name}/versions/2/infer") == "2"
    assert served(f"/v2/models/{name}/versions/production/infer") == "1"
    assert served(f"/v2/models/{name}/versions/latest/infer") == "2"
    first = client.post(f"/v2/models/{name}/versions/1/infer", content=body, headers=headers)
    got = np.array(read_answer(first.content, None)["by_name"]["probabilities"], np.float32)
    v1 = v1_predict(client, name, headers, version="1")["outputs"]
    np.testing.assert_array_equal(got, np.array(v1, np.float32).ravel())
    error_of(client.post(f"/v2/models/{name}/versions/9/infer", content=body, headers=headers), 404)
    error_of(
        client.post(f"/v2/models/{name}/versions/Bad!/infer", content=body, headers=headers), 400
    )


def test_keys_scopes_and_tenancy(client: TestClient, account: Account, keys: Keys) -> None:
    mine = publish(client, account).name
    other = register(client)
    theirs = publish(client, other).name
    public = publish(client, other, visibility="public").name
    body = orjson.dumps(json_request(ROWS))
    infer = f"/v2/models/{mine}/infer"

    # Without a key (or with a bad one): 401 asking for a bearer credential.
    for response in (
        client.post(infer, content=body),
        client.get(f"/v2/models/{mine}"),
        client.get(f"/v2/models/{mine}/ready"),
        client.post(infer, content=body, headers=bearer("aiaas_sk_not-a-key")),
    ):
        error_of(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"

    # Inference needs predict; metadata and readiness predict or models:read.
    reader, predictor, trainer = keys("models:read"), keys("predict"), keys("train")
    assert "'predict'" in error_of(client.post(infer, content=body, headers=reader), 403)
    assert client.post(infer, content=body, headers=predictor).status_code == 200
    for headers in (reader, predictor):
        assert client.get(f"/v2/models/{mine}", headers=headers).status_code == 200
        assert client.get(f"/v2/models/{mine}/ready", headers=headers).status_code == 200
    refused = error_of(client.get(f"/v2/models/{mine}", headers=trainer), 403)
    assert refused == "This API key lacks the 'predict' or 'models:read' scope."

    # Another account's private model answers as a name that does not exist, whatever asked.
    unknown = unique("none")
    # A reference that is no version at all ("0", a bad alias) included: refusing it would
    # confirm that the model exists.
    for suffix in ("", "/versions/1", "/versions/7", "/versions/0", "/versions/Bad_Alias"):
        for path, method in (("/infer", "POST"), ("", "GET"), ("/ready", "GET")):
            hidden = client.request(
                method, f"/v2/models/{theirs}{suffix}{path}", content=body, headers=predictor
            )
            missing = client.request(
                method, f"/v2/models/{unknown}{suffix}{path}", content=body, headers=predictor
            )
            assert error_of(hidden, 404).replace(theirs, "?") == error_of(missing, 404).replace(
                unknown, "?"
            )
    shared = client.post(f"/v2/models/{public}/infer", content=body, headers=predictor)
    assert shared.status_code == 200, shared.text


def test_errors_of_the_route_itself(client: TestClient, account: Account, keys: Keys) -> None:
    name = publish(client, account).name
    headers = keys("predict")
    assert error_of(client.get("/v2/repository/index", headers=headers), 404).startswith(
        "No route matches GET /v2/repository/index"
    )
    not_allowed = client.get(f"/v2/models/{name}/infer", headers=headers)
    error_of(not_allowed, 405)
    assert not_allowed.headers["allow"] == "POST"
    error_of(client.post(f"/v2/models/{name}", headers=headers), 405)
    renamed = json_request(ROWS)
    renamed["inputs"][0]["name"] = "x"
    wrong = client.post(f"/v2/models/{name}/infer", content=orjson.dumps(renamed), headers=headers)
    assert error_of(wrong, 400) == "this model takes one input named 'input', got 1: 'x'"


def test_a_body_over_the_predict_limit_is_413(live_settings: Settings) -> None:
    small = live_settings.model_copy(update={"max_request_mb": 0.001})  # 1048 bytes
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        owner = register(client)
        name = publish(client, owner).name
        headers = bearer(api_key(client, owner, ["predict"])["key"])
        body = orjson.dumps(json_request(np.ones((200, 4), np.float32)))
        assert "over the limit" in error_of(
            client.post(f"/v2/models/{name}/infer", content=body, headers=headers), 413
        )

        def chunks() -> Iterator[bytes]:
            yield body[:800]
            yield body[800:]

        streamed = client.post(f"/v2/models/{name}/infer", content=chunks(), headers=headers)
        error_of(streamed, 413)


def test_inference_shares_v1s_rate_limit(live_settings: Settings) -> None:
    limited = live_settings.model_copy(update={"rate_limit_predict": "3/minute"})
    with TestClient(create_app(limited), raise_server_exceptions=False) as client:
        owner = register(client)
        name = publish(client, owner).name
        headers = bearer(api_key(client, owner, ["predict"])["key"])
        body = orjson.dumps(json_request(ROWS))
        v1 = client.post(
            f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=headers
        )
        assert v1.headers["ratelimit-remaining"] == "2"
        answers = [
            client.post(f"/v2/models/{name}/infer", content=body, headers=headers) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[1].headers["ratelimit-remaining"] == "0"
        assert "Too many requests" in error_of(answers[2], 429)
        assert int(answers[2].headers["retry-after"]) >= 1


class _Stalled:
    """A dispatcher stand-in whose predict fails as the real one does on a timeout, or as a
    model that raises."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def predict(self, spec: ServingSpec, batch: np.ndarray) -> np.ndarray:
        raise self.error


@pytest.mark.parametrize(("error", "status"), [(TimeoutError(), 504), (RuntimeError("boom"), 500)])
def test_timeouts_and_model_failures_are_v1s_504_and_500(
    client: TestClient, account: Account, keys: Keys, error: Exception, status: int
) -> None:
    name = publish(client, account).name
    path = client.app.state.predict_path  # type: ignore[attr-defined]
    path.dispatcher = _Stalled(error)
    body = orjson.dumps(json_request(ROWS))
    message = error_of(
        client.post(f"/v2/models/{name}/infer", content=body, headers=keys("predict")), status
    )
    assert ("No worker answered" in message) is (status == 504)
    metrics = client.get("/metrics").text
    outcome = "timeout" if status == 504 else "failed"
    assert (
        f'aiaas_predictions_total{{model="{name}",status="{outcome}",version="1"}} 1.0' in metrics
    )


def test_requests_are_counted_under_route_templates_and_share_the_batcher(
    client: TestClient, account: Account, keys: Keys
) -> None:
    name = publish(client, account).name
    headers = keys("predict")
    body = orjson.dumps(json_request(ROWS))
    for _ in range(2):
        client.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    client.post(f"/v2/models/{name}/versions/1/infer", content=body, headers=headers)
    client.post("/v2/models/no-such-model/infer", content=body, headers=headers)
    client.get(f"/v2/models/{name}/ready", headers=headers)
    text = client.get("/metrics").text
    route = 'aiaas_http_requests_total{method="POST",route="/v2/models/{name}/infer",status='
    assert route + '"200"} 2.0' in text
    assert route + '"404"} 1.0' in text
    versioned = 'route="/v2/models/{name}/versions/{version}/infer",status="200"} 1.0'
    assert versioned in text
    assert 'route="/v2/models/{name}/ready",status="200"} 1.0' in text
    assert f'aiaas_predictions_total{{model="{name}",status="succeeded",version="1"}} 3.0' in text
    assert "aiaas_batch_size_sum 6.0" in text  # two rows each, through the batcher
    assert "no-such-model" not in text


def test_a_kept_prediction_gives_its_id_for_feedback(
    client: TestClient, account: Account, keys: Keys
) -> None:
    name = publish(client, account, labels=IRIS_LABELS).name
    assert client.patch(
        f"/v1/models/{name}", json={"capture_inputs": True}, headers=account.headers
    ).is_success
    headers = keys("predict")
    body = orjson.dumps(json_request(ROWS[:1], id="mine"))
    answer = client.post(f"/v2/models/{name}/infer", content=body, headers=headers).json()
    assert answer["id"] == "mine"
    ident = answer["parameters"]["prediction_id"]
    given = client.post(
        f"/v1/predictions/{ident}/feedback", json={"label": "setosa"}, headers=headers
    )
    assert given.status_code == 200, given.text
    assert given.json()["feedback"] == ["setosa"]
