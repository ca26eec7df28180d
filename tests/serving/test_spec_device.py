from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from typing import Any

import pytest
import torch

from aiaas.serving import ServingSpec, select_device
from tests.serving.helpers import make_spec


def test_round_trip_through_json() -> None:
    spec = make_spec("cnn", labels=tuple("abcdefghij"))
    copy = ServingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert copy.to_dict() == spec.to_dict()
    assert copy.labels == spec.labels
    assert copy.input_shape == (1, 8, 8)


def test_variable_axis_survives_json() -> None:
    config = {"cell": "gru", "input_size": 2, "hidden_size": 4, "seq_len": None, "output_dim": 1}
    spec = make_spec("rnn", config, task="regression")
    copy = ServingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert copy.input_shape == (None, 2)
    assert copy.task == "regression"


def test_same_weights_other_computation_is_another_key() -> None:
    """Identical bytes under another config, task or labels never share a runtime."""
    base = make_spec("mlp", weights="same")
    others = [
        make_spec(
            "mlp",
            {"input_dim": 64, "hidden": [32], "output_dim": 10, "activation": "tanh"},
            weights="same",
        ),
        make_spec("mlp", task="regression", weights="same"),
        make_spec("mlp", labels=tuple("abcdefghij"), weights="same"),
        make_spec("cnn", weights="same"),
        make_spec("mlp", weights="other"),
    ]
    keys = {base.runtime_key} | {other.runtime_key for other in others}
    assert len(keys) == len(others) + 1
    assert all(base != other for other in others)


def test_batching_knobs_separate_batchers_but_not_runtimes() -> None:
    a = make_spec("mlp", weights="same")
    slow = dataclasses.replace(a, max_delay_ms=500.0)
    assert a.runtime_key == slow.runtime_key
    assert a.key != slow.key
    assert a != slow


def test_equality_and_hash_follow_the_key() -> None:
    a = make_spec("mlp", weights="same")
    b = make_spec("mlp", weights="same")
    assert a == b
    assert {a: 1}[b] == 1
    # Key order in the config does not make another computation.
    config = dict(reversed(list(a.config.items())))
    assert make_spec("mlp", config, weights="same").key == a.key


def test_keys_survive_the_wire() -> None:
    spec = make_spec("mlp", labels=tuple("abcdefghij"), weights="w")
    copy = ServingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert (copy.key, copy.runtime_key, copy.weights) == (spec.key, spec.runtime_key, "w")
    legacy = spec.to_dict()
    legacy["key"] = legacy.pop("weights")
    assert ServingSpec.from_dict(legacy) == spec


def test_config_is_a_private_copy() -> None:
    config: dict[str, Any] = {"input_dim": 4, "hidden": [3], "output_dim": 2}
    spec = make_spec("mlp", config)
    config["hidden"].append(99)
    assert spec.config["hidden"] == [3]


def test_specs_pickle_and_copy() -> None:
    spec = make_spec("cnn", labels=tuple("abcdefghij"))
    # Our own bytes, just written: nothing untrusted is unpickled.
    for clone in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec)):  # noqa: S301
        assert clone.to_dict() == spec.to_dict()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("task", "ranking"),
        ("max_batch_size", 0),
        ("max_delay_ms", -1.0),
        ("max_delay_ms", float("nan")),
        ("input_shape", [0, 3]),
        ("weights", ""),
    ],
)
def test_bad_values_are_refused(field: str, value: Any) -> None:
    data = make_spec("mlp").to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=field.split("_")[0]):
        ServingSpec.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_batch_size", True), ("labels", "abc"), ("input_shape", [1.5]), ("config", [])],
)
def test_wrong_json_types_are_refused(field: str, value: Any) -> None:
    data = make_spec("mlp").to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=field):
        ServingSpec.from_dict(data)


def test_missing_field_and_extra_field() -> None:
    data = make_spec("mlp").to_dict()
    assert ServingSpec.from_dict({**data, "added_later": 1}) == make_spec("mlp")
    del data["architecture"]
    with pytest.raises(ValueError, match="architecture"):
        ServingSpec.from_dict(data)


def test_select_device_cpu_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(" CPU ") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("setting", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device(setting)


def test_cuda_index_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="2 GPU"):
        select_device("cuda:2")


@pytest.mark.parametrize("setting", ["tpu", "cuda:", "cuda:x", "cuda:-1", "", "gpu"])
def test_unknown_settings_are_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="device"):
        select_device(setting)
