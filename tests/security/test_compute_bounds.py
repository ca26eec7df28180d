"""A model's compute per example is bounded before anything is built or run: activation
memory from its config, and the length of a recurrent model's sequences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aiaas.ml.architectures import activation_bytes, build_model, parse_config
from aiaas.ml.errors import ConfigInvalid
from aiaas.ml.limits import LIMITS, MB
from aiaas.ml.weights import save_safetensors
from tests.factories import Account, create_model, post_version
from tests.helpers import assert_problem, bearer

# About a thousand parameters, and 8 channels on a 4096x4096 image: over 1 GB of activations
# for one row (the pooling keeps the dense head small).
HUGE_CNN = {
    "in_channels": 1,
    "height": 4096,
    "width": 4096,
    "blocks": [{"channels": 8, "kernel": 3, "pool": 512}],
    "output_dim": 2,
}
GRU = {"cell": "gru", "input_size": 2, "hidden_size": 4, "seq_len": None, "output_dim": 1}


def test_activation_memory_is_computed_from_the_config_before_building() -> None:
    config = parse_config(
        "mlp", {"input_dim": 4, "hidden": [8], "output_dim": 3}, max_parameters=100
    )
    assert activation_bytes("mlp", config) == 4 * (4 + 8 + 3)
    with pytest.raises(ConfigInvalid) as refused:
        parse_config("cnn", HUGE_CNN, max_parameters=10**9)
    (problem,) = refused.value.errors
    assert problem["loc"] == ["config"]
    assert "over the limit of 256 MB" in problem["msg"]
    assert "MB" in problem["msg"].split("would take", 1)[1]


def upload(
    client: TestClient, account: Account, name: str, architecture: str, config: dict[str, Any]
) -> Any:
    create_model(client, account, name, task="regression")
    # The config is refused before the weights are looked at: any well-formed file will do.
    module = build_model(
        "mlp", parse_config("mlp", {"input_dim": 2, "output_dim": 1}, max_parameters=100)
    )
    if architecture == "rnn":
        module = build_model("rnn", parse_config("rnn", config, max_parameters=10**6))
    spec = {"architecture": architecture, "config": config}
    weights = save_safetensors(module)
    return post_version(client, name, spec=spec, weights=weights, headers=account.headers)


def test_a_cnn_whose_activations_are_too_big_is_refused_at_upload(
    client: TestClient, account: Account
) -> None:
    problem = assert_problem(upload(client, account, "huge-cnn", "cnn", HUGE_CNN), 422)
    (error,) = problem["errors"]
    assert error["loc"] == ["spec", "config"]
    assert "1,088.0 MB" in error["msg"]
    assert "over the limit of 256 MB" in error["msg"]


def test_trainings_are_held_to_the_same_limit(
    client: TestClient, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Built-in data keeps inputs small; a lower limit shows the training route checks it.
    monkeypatch.setattr(LIMITS, "max_activation_bytes", 1024)
    training = client.post(
        "/v1/trainings",
        json={
            "model": "small-limit",
            "dataset": "builtin:iris",
            "architecture": "mlp",
            "config": {"hidden": [256]},
        },
        headers=account.headers,
    )
    body = assert_problem(training, 422)
    assert any("activations would take" in e["msg"] for e in body["errors"]), body


def test_a_config_sequence_over_the_limit_is_refused() -> None:
    with pytest.raises(ConfigInvalid) as refused:
        parse_config("rnn", dict(GRU, seq_len=LIMITS.max_sequence_length + 1), max_parameters=10**6)
    assert refused.value.errors[0]["loc"] == ["config", "seq_len"]


@pytest.mark.parametrize("media", ["json", "npy", "async"])
def test_a_variable_length_input_over_the_limit_is_a_422_naming_the_axis(
    client: TestClient,
    account: Account,
    make_key: Callable[..., dict[str, Any]],
    media: str,
) -> None:
    assert upload(client, account, "var-gru", "rnn", GRU).status_code == 201
    key = bearer(make_key(["predict"])["key"])
    steps = LIMITS.max_sequence_length + 1
    x = np.zeros((1, steps, 2), dtype=np.float32)
    if media == "json":
        answer = client.post("/v1/models/var-gru/predict", json={"inputs": x.tolist()}, headers=key)
    elif media == "async":
        job = {"model": "var-gru", "inputs": x.tolist()}
        answer = client.post("/v1/predictions", json=job, headers=key)
    else:
        import io

        buffer = io.BytesIO()
        np.save(buffer, x)
        answer = client.post(
            "/v1/models/var-gru/predict",
            content=buffer.getvalue(),
            headers={**key, "Content-Type": "application/x-npy"},
        )
    problem = assert_problem(answer, 422)
    assert "axis 1" in problem["detail"]
    assert problem["errors"][0]["loc"][-1] == "axis 1", problem
    assert str(LIMITS.max_sequence_length) in problem["detail"]
    # At the limit it is served.
    ok = client.post(
        "/v1/models/var-gru/predict",
        json={"inputs": np.zeros((1, 8, 2)).tolist()},
        headers=key,
    )
    assert ok.status_code == 200, ok.text


def test_the_default_limits_are_the_settings_defaults() -> None:
    assert LIMITS.max_activation_bytes == 256 * MB
    assert LIMITS.max_sequence_length == 4096


def test_a_limit_lowered_later_leaves_registered_versions_servable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.serving.helpers import load_runtime, make_module, make_spec

    spec = make_spec("mlp")
    module = make_module(spec)  # registered while the limit was higher
    monkeypatch.setattr(LIMITS, "max_activation_bytes", 1)
    with pytest.raises(ConfigInvalid):
        parse_config("mlp", dict(spec.config), max_parameters=10**9)
    runtime, _ = load_runtime(spec, module=module)
    assert runtime.predict(np.zeros((1, 64), dtype=np.float32)).shape == (1, 10)
