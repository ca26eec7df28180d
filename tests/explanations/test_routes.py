"""``POST /v1/models/{name}/explain`` in embedded mode: the answer, its options, .npy in and
out, and every refusal predict makes (tenancy, scope, limits, rate limit, timeout)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from aiaas.config import Settings
from aiaas.db import Database
from aiaas.main import create_app
from aiaas.ml.explain import ExplainOptions, evaluations, explain
from tests.factories import Account, api_key, publish, register
from tests.helpers import assert_problem, bearer
from tests.predictions.conftest import IRIS_LABELS, npy

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
NPY = "application/x-npy"
CNN_CONFIG: dict[str, Any] = {
    "in_channels": 1,
    "height": 8,
    "width": 8,
    "blocks": [{"channels": 4, "kernel": 3}],
    "output_dim": 3,
}


def expected(module: torch.nn.Module, x: np.ndarray, **options: Any) -> np.ndarray:
    """The attributions computed on the module itself, with no server in between."""
    found = explain(module, torch.from_numpy(x), ExplainOptions(**options), softmax=True)
    return found.attributions


@pytest.fixture
def predictor(client: TestClient, account: Account) -> dict[str, str]:
    return bearer(api_key(client, account, ["predict"])["key"])


@pytest.fixture
def iris(client: TestClient, account: Account) -> tuple[str, torch.nn.Module]:
    name, module = publish(client, account, labels=IRIS_LABELS)
    return name, module


def test_the_answer_explains_each_row(
    client: TestClient, iris: tuple[str, torch.nn.Module], predictor: dict[str, str]
) -> None:
    name, module = iris
    body = {"inputs": ROWS.tolist(), "target": "virginica", "steps": 64}
    response = client.post(f"/v1/models/{name}/explain", json=body, headers=predictor)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == name
    assert answer["version"] == 1
    assert answer["method"] == "integrated_gradients"
    assert answer["target"] == ["virginica", "virginica"]
    attributions = np.array(answer["attributions"], dtype=np.float32)
    assert attributions.shape == ROWS.shape
    np.testing.assert_allclose(
        attributions, expected(module, ROWS, target=2, steps=64), rtol=1e-5, atol=1e-6
    )
    predicted = client.post(
        f"/v1/models/{name}/predict", json={"inputs": ROWS.tolist()}, headers=predictor
    ).json()
    assert answer["predictions"] == predicted["predictions"]
    np.testing.assert_allclose(answer["outputs"], predicted["outputs"], atol=1e-6)
    # The gap, as the answer's own numbers add up.
    with torch.no_grad():
        start = module(torch.zeros(2, 4)).softmax(-1)[:, 2].numpy()
    moved = np.array(answer["outputs"])[:, 2] - start
    np.testing.assert_allclose(
        answer["completeness_gap"], attributions.sum(axis=1) - moved, atol=1e-5
    )


def test_a_target_by_index_is_the_target_by_name(
    client: TestClient, iris: tuple[str, torch.nn.Module], predictor: dict[str, str]
) -> None:
    name, _ = iris
    url = f"/v1/models/{name}/explain"
    by_name = client.post(
        url, json={"inputs": ROWS.tolist(), "target": "versicolor"}, headers=predictor
    )
    by_index = client.post(url, json={"inputs": ROWS.tolist(), "target": 1}, headers=predictor)
    assert by_name.status_code == by_index.status_code == 200, by_index.text
    assert by_name.json() == by_index.json()
    assert by_index.json()["target"] == ["versicolor", "versicolor"]


def test_the_default_target_is_the_predicted_class(
    client: TestClient, iris: tuple[str, torch.nn.Module], predictor: dict[str, str]
) -> None:
    name, module = iris
    response = client.post(
        f"/v1/models/{name}/explain",
        json={"inputs": ROWS.tolist(), "method": "saliency"},
        headers=predictor,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["target"] == answer["predictions"]
    assert answer["completeness_gap"] is None
    np.testing.assert_allclose(
        answer["attributions"], expected(module, ROWS, method="saliency"), rtol=1e-5, atol=1e-7
    )


def test_npy_in_and_out(
    client: TestClient, iris: tuple[str, torch.nn.Module], predictor: dict[str, str]
) -> None:
    name, _ = iris
    url = f"/v1/models/{name}/explain"
    response = client.post(
        url,
        params={"method": "saliency", "target": "setosa"},
        content=npy(ROWS),
        headers={**predictor, "content-type": NPY, "accept": NPY},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NPY
    assert response.headers["aiaas-method"] == "saliency"
    assert response.headers["aiaas-target"] == "0,0"
    assert response.headers["aiaas-version"] == "1"
    attributions = np.load(io.BytesIO(response.content))
    as_json = client.post(
        url, json={"inputs": ROWS.tolist(), "method": "saliency", "target": 0}, headers=predictor
    ).json()
    np.testing.assert_array_equal(attributions, np.array(as_json["attributions"], np.float32))


def test_occlusion_on_a_cnn(
    client: TestClient, account: Account, predictor: dict[str, str]
) -> None:
    name, module = publish(client, account, architecture="cnn", config=CNN_CONFIG)
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    response = client.post(
        f"/v1/models/{name}/explain",
        json={"inputs": x.tolist(), "method": "occlusion", "target": 0},
        headers=predictor,
    )
    assert response.status_code == 200, response.text
    attributions = np.array(response.json()["attributions"], dtype=np.float32)
    assert attributions.shape == x.shape
    np.testing.assert_allclose(
        attributions, expected(module, x, method="occlusion", target=0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"method": "lime"}, ["body", "method"]),
        ({"method": "occlusion"}, ["body", "method"]),  # an MLP: images only
        ({"target": "daisy"}, ["body", "target"]),
        ({"target": 3}, ["body", "target"]),
        ({"target": True}, ["body", "target"]),
        ({"baseline": "mean"}, ["body", "baseline"]),
        ({"baseline": "noise"}, ["body", "baseline"]),
        ({"steps": 0}, ["body", "steps"]),
        ({"colour": "red"}, ["body", "colour"]),
    ],
)
def test_bad_options_are_refused_naming_the_field(
    client: TestClient,
    iris: tuple[str, torch.nn.Module],
    predictor: dict[str, str],
    options: dict[str, Any],
    loc: list[str],
) -> None:
    name, _ = iris
    body = {"inputs": ROWS.tolist(), **options}
    response = client.post(f"/v1/models/{name}/explain", json=body, headers=predictor)
    problem = assert_problem(response, 422)
    assert [error["loc"] for error in problem["errors"]] == [loc], problem


def test_bad_query_options_name_the_query(
    client: TestClient, iris: tuple[str, torch.nn.Module], predictor: dict[str, str]
) -> None:
    name, _ = iris
    response = client.post(
        f"/v1/models/{name}/explain",
        params={"method": "occlusion", "target": "daisy"},
        content=npy(ROWS),
        headers={**predictor, "content-type": NPY},
    )
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["query", "method"]
    assert "occlusion explains images" in problem["detail"]


def test_another_accounts_private_model_is_not_found_as_for_predict(
    client: TestClient, predictor: dict[str, str]
) -> None:
    other = register(client)
    name, _ = publish(client, other)
    for version in (None, "1", "7"):
        params = {"version": version} if version else {}
        body = {"inputs": ROWS.tolist()}
        explained = client.post(
            f"/v1/models/{name}/explain", json=body, params=params, headers=predictor
        )
        predicted = client.post(
            f"/v1/models/{name}/predict", json=body, params=params, headers=predictor
        )
        unknown = client.post("/v1/models/no-such-model/explain", json=body, headers=predictor)
        problems = [assert_problem(r, 404) for r in (explained, predicted, unknown)]
        shapes = [{k: p[k] for k in ("type", "title")} for p in problems]
        assert shapes[0] == shapes[1] == shapes[2]
        assert problems[0]["detail"] == problems[1]["detail"] == f"No model named '{name}'."


def test_a_public_model_explains_for_anyone(client: TestClient, predictor: dict[str, str]) -> None:
    other = register(client)
    name, _ = publish(client, other, visibility="public")
    response = client.post(
        f"/v1/models/{name}/explain", json={"inputs": ROWS.tolist()}, headers=predictor
    )
    assert response.status_code == 200, response.text


def test_needs_the_predict_scope(
    client: TestClient, account: Account, iris: tuple[str, torch.nn.Module]
) -> None:
    name, _ = iris
    reader = bearer(api_key(client, account, ["models:read"])["key"])
    response = client.post(
        f"/v1/models/{name}/explain", json={"inputs": [1, 2, 3, 4]}, headers=reader
    )
    assert assert_problem(response, 403)["required_scope"] == "predict"
    anonymous = client.post(f"/v1/models/{name}/explain", json={"inputs": [1, 2, 3, 4]})
    assert_problem(anonymous, 401)


@pytest.fixture
def limited(settings: Settings, db: Database) -> Iterator[Callable[..., TestClient]]:
    """Clients of apps with some settings changed, on the test's database."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(settings.model_copy(update=overrides), database=db)
        client = TestClient(app, raise_server_exceptions=False).__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _owner_and_key(client: TestClient) -> tuple[Account, dict[str, str]]:
    owner = register(client)
    return owner, bearer(api_key(client, owner, ["predict"])["key"])


def test_the_request_limits_of_predict(limited: Callable[..., TestClient]) -> None:
    client = limited(max_batch_rows=2, max_request_mb=0.01, max_sequence_length=10)
    owner, key = _owner_and_key(client)
    name, _ = publish(client, owner)
    url = f"/v1/models/{name}/explain"
    rows = client.post(url, json={"inputs": ROWS.tolist() * 2}, headers=key)
    assert "at most 2" in assert_problem(rows, 422)["detail"]
    big = client.post(
        url, content=b"[" * 20_000, headers={**key, "content-type": "application/json"}
    )
    assert_problem(big, 413)
    rnn = {"cell": "gru", "input_size": 1, "hidden_size": 4, "seq_len": None, "output_dim": 2}
    sequences, _ = publish(client, owner, architecture="rnn", config=rnn)
    long = client.post(
        f"/v1/models/{sequences}/explain", json={"inputs": [[[0.5]] * 11]}, headers=key
    )
    assert_problem(long, 422)
    short = client.post(
        f"/v1/models/{sequences}/explain", json={"inputs": [[[0.5]] * 10]}, headers=key
    )
    assert short.status_code == 200, short.text
    assert np.array(short.json()["attributions"]).shape == (1, 10, 1)


def test_shares_the_predict_rate_limit(limited: Callable[..., TestClient]) -> None:
    client = limited(rate_limit_predict="2/minute")
    owner, key = _owner_and_key(client)
    name, _ = publish(client, owner)
    body = {"inputs": ROWS.tolist()}
    predicted = client.post(f"/v1/models/{name}/predict", json=body, headers=key)
    explained = client.post(f"/v1/models/{name}/explain", json=body, headers=key)
    assert predicted.status_code == explained.status_code == 200, explained.text
    assert explained.headers["ratelimit-remaining"] == "0"
    refused = client.post(f"/v1/models/{name}/explain", json=body, headers=key)
    assert int(assert_problem(refused, 429)["retry_after"]) >= 1


def test_answers_504_past_the_predict_timeout(limited: Callable[..., TestClient]) -> None:
    # Far below what loading the model takes, let alone integrating over it.
    client = limited(predict_timeout_s=1e-4)
    owner, key = _owner_and_key(client)
    name, _ = publish(client, owner)
    response = client.post(
        f"/v1/models/{name}/explain", json={"inputs": ROWS.tolist()}, headers=key
    )
    assert "No worker answered" in assert_problem(response, 504)["detail"]


def test_an_explanation_over_the_evaluation_limit_is_refused(
    client: TestClient,
    predictor: dict[str, str],
    iris: tuple[str, torch.nn.Module],
    settings: Settings,
) -> None:
    """One call of the predict rate limit may not hold the forward thread without bound:
    rows x steps past AIAAS_EXPLAIN_MAX_EVALUATIONS is a 422, before anything runs."""
    name, _ = iris
    limit = settings.explain_max_evaluations
    rows = [[5.1, 3.5, 1.4, 0.2]] * 200
    url = f"/v1/models/{name}/explain"
    steps = limit // len(rows) + 1
    refused = client.post(url, json={"inputs": rows, "steps": steps}, headers=predictor)
    body = assert_problem(refused, 422)
    assert body["errors"][0]["loc"] == ["body", "inputs"]
    assert f"{len(rows) * steps:,}" in body["detail"]
    fits = client.post(url, json={"inputs": rows, "steps": steps - 1}, headers=predictor)
    assert fits.status_code == 200, fits.text


def test_an_explanations_cost_counts_what_each_method_runs() -> None:
    assert evaluations(ExplainOptions(steps=64), 10, (4,)) == 640
    assert evaluations(ExplainOptions(method="saliency"), 10, (4,)) == 10
    # 8x8 digits: 1-pixel patches, 64 of them, plus the unoccluded pass.
    assert evaluations(ExplainOptions(method="occlusion"), 10, (1, 8, 8)) == 650
    # 28x28: 4-pixel patches, 7 x 7 of them.
    assert evaluations(ExplainOptions(method="occlusion"), 2, (1, 28, 28)) == 100
