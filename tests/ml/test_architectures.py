from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import BaseModel

from aiaas.ml.architectures import (
    ARCHITECTURES,
    CNNConfig,
    InputSpec,
    build_model,
    count_parameters,
    input_spec,
    parameter_count,
    parse_config,
)
from aiaas.ml.architectures.rnn import SequenceModel
from aiaas.ml.errors import ConfigInvalid, UnknownArchitecture

LIMIT = 50_000_000


def _forward(arch: str, config: BaseModel, *shape: int, batch: int = 4) -> torch.Tensor:
    model = build_model(arch, config).eval()
    with torch.no_grad():
        out: torch.Tensor = model(torch.randn(batch, *shape))
    return out


def _errors(arch: str, raw: dict[str, Any], limit: int = LIMIT) -> list[dict[str, Any]]:
    with pytest.raises(ConfigInvalid) as info:
        parse_config(arch, raw, max_parameters=limit)
    return [dict(item) for item in info.value.errors]


def test_registry_names() -> None:
    assert set(ARCHITECTURES) == {"mlp", "cnn", "rnn"}
    for name, arch in ARCHITECTURES.items():
        assert arch.name == name
        assert arch.description


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_example_config_builds_and_runs(name: str) -> None:
    arch = ARCHITECTURES[name]
    config = parse_config(name, arch.example_config, max_parameters=LIMIT)
    spec = input_spec(name, config)
    shape = [dim if dim is not None else 7 for dim in spec.shape]
    out = _forward(name, config, *shape, batch=3)
    assert out.shape == (3, arch.example_config["output_dim"])
    assert out.dtype == torch.float32
    assert spec.to_dict() == {"shape": list(spec.shape), "dtype": "float32"}


def test_example_config_is_a_copy() -> None:
    ARCHITECTURES["mlp"].example_config["input_dim"] = 999
    assert ARCHITECTURES["mlp"].example_config["input_dim"] == 64


@pytest.mark.parametrize("name", ["mlp", "cnn", "rnn"])
def test_json_schema_is_informative(name: str) -> None:
    arch = ARCHITECTURES[name]
    schema = arch.config_model.model_json_schema()
    assert isinstance(schema, dict)
    assert "properties" in schema
    assert all("description" in prop for prop in schema["properties"].values())
    described = arch.describe()
    assert described["config_schema"] == schema
    assert described["example_config"] == arch.example_config


def test_input_specs() -> None:
    cnn = parse_config("cnn", ARCHITECTURES["cnn"].example_config, max_parameters=LIMIT)
    assert input_spec("cnn", cnn) == InputSpec(shape=(1, 8, 8))
    rnn = parse_config(
        "rnn",
        {"cell": "gru", "input_size": 3, "hidden_size": 4, "seq_len": None, "output_dim": 2},
        max_parameters=LIMIT,
    )
    assert input_spec("rnn", rnn).to_dict() == {"shape": [None, 3], "dtype": "float32"}


def test_cnn_on_28x28() -> None:
    raw = {
        "in_channels": 1,
        "height": 28,
        "width": 28,
        "blocks": [
            {"channels": 4, "kernel": 5, "padding": 0},  # 24 -> pool 12
            {"channels": 8, "kernel": 3},  # 12 -> pool 6
            {"channels": 8, "kernel": 3, "pool": 1},  # 6
        ],
        "hidden": [16],
        "output_dim": 10,
        "activation": "gelu",
        "dropout": 0.2,
    }
    config = parse_config("cnn", raw, max_parameters=LIMIT)
    assert _forward("cnn", config, 1, 28, 28).shape == (4, 10)
    assert parameter_count("cnn", config) == count_parameters(build_model("cnn", config))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_variable_length_rnn(bidirectional: bool) -> None:
    raw = {
        "cell": "lstm",
        "input_size": 2,
        "hidden_size": 5,
        "num_layers": 2,
        "bidirectional": bidirectional,
        "seq_len": None,
        "output_dim": 3,
    }
    config = parse_config("rnn", raw, max_parameters=LIMIT)
    assert _forward("rnn", config, 11, 2).shape == (4, 3)
    assert _forward("rnn", config, 29, 2).shape == (4, 3)


def test_bidirectional_uses_backward_direction_at_step_zero() -> None:
    raw = {
        "cell": "gru",
        "input_size": 1,
        "hidden_size": 3,
        "bidirectional": True,
        "seq_len": None,
        "output_dim": 1,
    }
    model = build_model("rnn", parse_config("rnn", raw, max_parameters=LIMIT)).eval()
    assert isinstance(model, SequenceModel)
    x = torch.randn(2, 6, 1)
    with torch.no_grad():
        seq_out, _ = model.rnn(x)
        expected = model.head(torch.cat([seq_out[:, -1, :3], seq_out[:, 0, 3:]], dim=1))
        assert torch.equal(model(x), expected)


def test_unknown_architecture() -> None:
    with pytest.raises(UnknownArchitecture) as info:
        parse_config("transformer", {}, max_parameters=LIMIT)
    assert info.value.known == ["cnn", "mlp", "rnn"]


def test_negative_width() -> None:
    errors = _errors("mlp", {"input_dim": 4, "hidden": [8, -3], "output_dim": 2})
    assert [e["loc"] for e in errors] == [["config", "hidden", 1]]
    assert errors[0]["type"] == "greater_than_equal"
    assert "input" not in errors[0]


def test_extra_field() -> None:
    errors = _errors("mlp", {"input_dim": 4, "hidden": [], "output_dim": 2, "layers": 3})
    assert [(e["loc"], e["type"]) for e in errors] == [(["config", "layers"], "extra_forbidden")]


def test_extra_field_in_cnn_block() -> None:
    raw = dict(ARCHITECTURES["cnn"].example_config)
    raw["blocks"] = [{"channels": 2, "kernel": 3, "stride": 2}]
    errors = _errors("cnn", raw)
    assert [e["loc"] for e in errors] == [["config", "blocks", 0, "stride"]]


def test_unknown_cell() -> None:
    raw = {**ARCHITECTURES["rnn"].example_config, "cell": "transformer"}
    errors = _errors("rnn", raw)
    assert [(e["loc"], e["type"]) for e in errors] == [(["config", "cell"], "literal_error")]


@pytest.mark.parametrize("bad", [True, "8", 8.0])
def test_integers_are_strict(bad: Any) -> None:
    errors = _errors("mlp", {"input_dim": bad, "hidden": [], "output_dim": 2})
    assert [e["loc"] for e in errors] == [["config", "input_dim"]]


@pytest.mark.parametrize("dropout", [1.0, -0.1, float("nan")])
def test_dropout_range(dropout: float) -> None:
    errors = _errors("mlp", {"input_dim": 4, "hidden": [], "output_dim": 2, "dropout": dropout})
    assert [e["loc"] for e in errors] == [["config", "dropout"]]


def test_not_a_mapping() -> None:
    errors = _errors("mlp", [1, 2, 3])  # type: ignore[arg-type]
    assert errors[0]["loc"] == ["config"]


def test_sanity_caps() -> None:
    errors = _errors("mlp", {"input_dim": 10**9, "hidden": [], "output_dim": 2})
    assert [(e["loc"], e["type"]) for e in errors] == [(["config", "input_dim"], "less_than_equal")]
    rnn = {**ARCHITECTURES["rnn"].example_config, "num_layers": 65}
    assert [e["loc"] for e in _errors("rnn", rnn)] == [["config", "num_layers"]]


def _three_block_cnn(second_kernel: int, **second: Any) -> dict[str, Any]:
    return {
        "in_channels": 1,
        "height": 8,
        "width": 8,
        "blocks": [
            {"channels": 4, "kernel": 3},  # 8x8 -> pool 4x4
            {"channels": 4, "kernel": second_kernel, "padding": 0, **second},
            {"channels": 4, "kernel": 1, "pool": 1},
        ],
        "output_dim": 2,
    }


def test_kernel_larger_than_image_in_second_block() -> None:
    errors = _errors("cnn", _three_block_cnn(5))
    assert errors == [
        {
            "loc": ["config", "blocks", 1, "kernel"],
            "msg": "block 2: kernel 5 on a 4x4 input leaves 0x0",
            "type": "conv_output_empty",
        }
    ]


def test_pool_larger_than_feature_map() -> None:
    errors = _errors("cnn", _three_block_cnn(2, pool=4))  # conv leaves 3x3
    assert [e["loc"] for e in errors] == [["config", "blocks", 1, "kernel"]]
    assert errors[0]["msg"] == "block 2: pool 4 on the 3x3 conv output leaves 0x0"


def test_padding_must_be_smaller_than_kernel() -> None:
    errors = _errors("cnn", _three_block_cnn(3, padding=3))
    assert [e["loc"] for e in errors] == [["config", "blocks", 1, "padding"]]


def test_rnn_dropout_needs_layers() -> None:
    raw = {**ARCHITECTURES["rnn"].example_config, "dropout": 0.3}
    assert [e["loc"] for e in _errors("rnn", raw)] == [["config", "dropout"]]
    config = parse_config("rnn", {**raw, "num_layers": 2}, max_parameters=LIMIT)
    assert _forward("rnn", config, 50, 1).shape == (4, 3)


def test_over_parameter_limit() -> None:
    raw = {"input_dim": 1000, "hidden": [1000], "output_dim": 10}
    errors = _errors("mlp", raw, limit=100_000)
    assert errors == [
        {
            "loc": ["config"],
            "msg": "the model would have 1011010 parameters, over the limit of 100000",
            "type": "too_many_parameters",
        }
    ]
    assert parse_config("mlp", raw, max_parameters=1_011_010)


def test_huge_config_is_refused_without_allocating() -> None:
    # ~4.4e12 parameters: building it would need terabytes, counting it is instant.
    raw = {"input_dim": 65536, "hidden": [65536] * 64, "output_dim": 65536}
    errors = _errors("mlp", raw)
    assert errors[0]["type"] == "too_many_parameters"


def test_build_model_rejects_wrong_config_type() -> None:
    config = parse_config("mlp", ARCHITECTURES["mlp"].example_config, max_parameters=LIMIT)
    with pytest.raises(TypeError):
        build_model("cnn", config)


def test_build_model_runs_layer_checks_on_direct_configs() -> None:
    config = CNNConfig.model_validate(_three_block_cnn(5))
    with pytest.raises(ConfigInvalid) as info:
        build_model("cnn", config)
    assert info.value.errors[0]["loc"] == ["config", "blocks", 1, "kernel"]
