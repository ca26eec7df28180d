from __future__ import annotations

import math

import pytest
import torch

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.defaults import (
    ShapeMismatch,
    default_config,
    fit_config,
    recommended_hyperparameters,
)
from aiaas.ml.errors import MLError, UnknownArchitecture
from aiaas.ml.training import Hyperparameters

# The platform's default parameter limit.
MAX_PARAMETERS = 50_000_000


@pytest.mark.parametrize(
    ("architecture", "shape", "outputs"),
    [
        ("mlp", (4,), 3),
        ("mlp", (30,), 2),
        ("mlp", (1, 8, 8), 10),
        ("mlp", (1, 28, 28), 10),
        ("cnn", (1, 8, 8), 10),
        ("cnn", (1, 28, 28), 10),
        ("cnn", (3, 32, 32), 100),
        ("cnn", (3, 224, 224), 1000),
        ("cnn", (1, 1, 1), 2),
        ("cnn", (2, 3, 100), 1),
        ("rnn", (32, 1), 3),
        ("rnn", (5, 12), 1),
    ],
)
def test_default_configs_are_valid_and_run(
    architecture: str, shape: tuple[int, ...], outputs: int
) -> None:
    config = parse_config(
        architecture, default_config(architecture, shape, outputs), max_parameters=MAX_PARAMETERS
    )
    model = build_model(architecture, config).eval()
    batch = torch.zeros(2, math.prod(shape)) if architecture == "mlp" else torch.zeros(2, *shape)
    with torch.inference_mode():
        assert model(batch).shape == (2, outputs)


def test_cnn_default_fits_digits_and_grows_with_the_image() -> None:
    digits = default_config("cnn", (1, 8, 8), 10)
    assert len(digits["blocks"]) == 2
    assert len(default_config("cnn", (3, 224, 224), 10)["blocks"]) > len(digits["blocks"])


def test_rnn_default() -> None:
    assert default_config("rnn", (32, 1), 3) == {
        "cell": "lstm",
        "hidden_size": 64,
        "num_layers": 1,
        "seq_len": 32,
        "input_size": 1,
        "output_dim": 3,
    }


@pytest.mark.parametrize(
    ("architecture", "shape", "hint"),
    [
        ("cnn", (64,), ""),
        ("cnn", (8, 8), "[1, 8, 8]"),
        ("cnn", (1, 1, 8, 8), ""),
        ("rnn", (32,), "[32, 1]"),
        ("rnn", (1, 8, 8), ""),
    ],
)
def test_shapes_an_architecture_cannot_take(
    architecture: str, shape: tuple[int, ...], hint: str
) -> None:
    for call in (
        lambda: default_config(architecture, shape, 2),
        lambda: fit_config(architecture, {}, shape, 2),
    ):
        with pytest.raises(ShapeMismatch) as caught:
            call()
        assert isinstance(caught.value, MLError)
        assert architecture in caught.value.msg
        assert hint in caught.value.msg


def test_empty_samples_and_unknown_architectures() -> None:
    with pytest.raises(ShapeMismatch, match="no values"):
        default_config("mlp", (0,), 2)
    with pytest.raises(ShapeMismatch, match="output"):
        default_config("mlp", (3,), 0)
    with pytest.raises(UnknownArchitecture):
        default_config("transformer", (3,), 2)


def test_fit_config_fills_only_what_is_missing() -> None:
    fitted = fit_config("mlp", {"hidden": [16], "activation": "tanh"}, (1, 8, 8), 10)
    assert fitted == {"hidden": [16], "activation": "tanh", "input_dim": 64, "output_dim": 10}

    blocks = [{"channels": 4, "kernel": 3}]
    fitted = fit_config("cnn", {"blocks": blocks, "in_channels": 1}, (1, 28, 28), 10)
    assert fitted == {
        "blocks": blocks,
        "in_channels": 1,
        "height": 28,
        "width": 28,
        "output_dim": 10,
    }
    parse_config("cnn", fitted, max_parameters=MAX_PARAMETERS)


def test_fit_config_fills_required_fields_from_the_default() -> None:
    fitted = fit_config("cnn", {"hidden": [32]}, (1, 8, 8), 10)
    assert fitted["blocks"] == default_config("cnn", (1, 8, 8), 10)["blocks"]
    assert fitted["hidden"] == [32]
    assert "dropout" not in fitted


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fit_config_takes_the_users_rnn_cell(cell: str) -> None:
    fitted = fit_config("rnn", {"cell": cell}, (32, 1), 3)
    assert fitted == {
        "cell": cell,
        "hidden_size": 64,
        "seq_len": 32,
        "input_size": 1,
        "output_dim": 3,
    }
    model = build_model("rnn", parse_config("rnn", fitted, max_parameters=MAX_PARAMETERS))
    assert model(torch.zeros(2, 32, 1)).shape == (2, 3)


def test_fit_config_keeps_a_variable_sequence_length() -> None:
    fitted = fit_config("rnn", {"cell": "gru", "seq_len": None}, (32, 2), 3)
    assert fitted["seq_len"] is None
    assert fitted["input_size"] == 2


@pytest.mark.parametrize(
    ("architecture", "config", "shape", "field"),
    [
        ("mlp", {"input_dim": 63}, (1, 8, 8), "input_dim"),
        ("mlp", {"output_dim": 3}, (4,), "output_dim"),
        ("cnn", {"height": 28}, (1, 8, 8), "height"),
        ("cnn", {"in_channels": 3}, (1, 8, 8), "in_channels"),
        ("rnn", {"seq_len": 16}, (32, 1), "seq_len"),
        ("rnn", {"input_size": 2}, (32, 1), "input_size"),
    ],
)
def test_fit_config_refuses_fields_that_contradict_the_data(
    architecture: str, config: dict[str, int], shape: tuple[int, ...], field: str
) -> None:
    with pytest.raises(ShapeMismatch, match=field):
        fit_config(architecture, config, shape, 2)


def test_fit_config_does_not_change_its_argument() -> None:
    config = {"cell": "gru"}
    fit_config("rnn", config, (8, 1), 2)
    assert config == {"cell": "gru"}


@pytest.mark.parametrize("architecture", ["mlp", "cnn", "rnn"])
@pytest.mark.parametrize("rows", [1, 150, 569, 1797, 100_000])
def test_recommended_hyperparameters_are_usable(architecture: str, rows: int) -> None:
    recommended = recommended_hyperparameters(architecture, rows)
    assert set(recommended) == {"epochs", "learning_rate", "batch_size"}
    hp = Hyperparameters(**recommended)
    assert 20 <= hp.epochs <= 200
    assert hp.batch_size <= max(16, rows)


def test_recommended_hyperparameters_for_digits() -> None:
    assert recommended_hyperparameters("cnn", 1797) == {
        "epochs": 30,
        "learning_rate": 2e-3,
        "batch_size": 64,
    }
    # Fewer rows get more epochs, to take a similar number of optimizer steps.
    assert (
        recommended_hyperparameters("mlp", 150)["epochs"]
        > recommended_hyperparameters("mlp", 1797)["epochs"]
    )
    with pytest.raises(ValueError, match="rows"):
        recommended_hyperparameters("mlp", 0)
