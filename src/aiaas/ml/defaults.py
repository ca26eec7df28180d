"""Architecture configs and hyperparameters that suit a dataset's shape.

``default_config`` proposes a whole config; ``fit_config`` completes a user's partial one
from the dataset (input sizes, output count, and any required field the user left out).
``recommended_hyperparameters`` holds the settings measured to train the built-in
datasets well on two CPU cores; the slow tests in ``tests/ml/test_training.py`` check them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiaas.ml.architectures import get_architecture
from aiaas.ml.errors import ShapeMismatch

# Conv blocks keep halving the image until it is this small (or the block cap is reached):
# past that, pooling only throws away the little position information left.
_SMALLEST_FEATURE_MAP: Final = 4
_MAX_DEFAULT_BLOCKS: Final = 5
_MAX_DEFAULT_CHANNELS: Final = 128

# Measured on digits (cnn), iris and breast_cancer (mlp) and synthetic waveforms (rnn):
# LSTMs need the most steps, and occasionally stall on a plateau with fewer.
_TARGET_STEPS: Final = {"mlp": 1000, "cnn": 600, "rnn": 1000}
_LEARNING_RATES: Final = {"mlp": 2e-3, "cnn": 2e-3, "rnn": 5e-3}
_TRAIN_SHARE: Final = 0.7
_MIN_EPOCHS: Final = 20
_MAX_EPOCHS: Final = 200


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(dim) for dim in shape) + "]"


def _checked_shape(architecture: str, input_shape: Sequence[int], outputs: int) -> tuple[int, ...]:
    get_architecture(architecture)
    shape = tuple(int(dim) for dim in input_shape)
    if not shape or any(dim < 1 for dim in shape):
        raise ShapeMismatch(f"samples of shape {_shape_text(shape)} hold no values")
    if outputs < 1:
        raise ShapeMismatch(f"the model needs at least one output, got {outputs}")
    if architecture == "cnn" and len(shape) != 3:
        hint = f"; reshape them to {_shape_text((1, *shape))}" if len(shape) == 2 else ""
        raise ShapeMismatch(
            f"cnn takes images of shape [channels, height, width], but the samples are "
            f"{_shape_text(shape)}{hint}"
        )
    if architecture == "rnn" and len(shape) != 2:
        hint = f"; reshape them to {_shape_text((*shape, 1))}" if len(shape) == 1 else ""
        raise ShapeMismatch(
            f"rnn takes sequences of shape [seq_len, input_size], but the samples are "
            f"{_shape_text(shape)}{hint}"
        )
    return shape


def _io_fields(architecture: str, shape: tuple[int, ...], outputs: int) -> dict[str, int]:
    """The config fields a dataset decides: what goes in and how many values come out."""
    if architecture == "mlp":
        return {"input_dim": math.prod(shape), "output_dim": outputs}
    if architecture == "cnn":
        channels, height, width = shape
        return {"in_channels": channels, "height": height, "width": width, "output_dim": outputs}
    seq_len, input_size = shape
    return {"seq_len": seq_len, "input_size": input_size, "output_dim": outputs}


def _dense_widths(features: int) -> list[int]:
    # Over ten splits, [64, 32] with a little dropout did better on iris than [128, 64]
    # without (mean test accuracy 0.957 against 0.940) and as well on breast_cancer.
    first = 64 if features <= 64 else 128 if features <= 512 else 256
    return [first, first // 2]


def _conv_blocks(height: int, width: int) -> list[dict[str, int]]:
    blocks: list[dict[str, int]] = []
    channels = 32
    # Two blocks at least, even for tiny images: the pair is what was measured on 8x8 digits.
    while len(blocks) < 2 or (
        min(height, width) > _SMALLEST_FEATURE_MAP and len(blocks) < _MAX_DEFAULT_BLOCKS
    ):
        pool = 2 if min(height, width) >= 2 else 1
        blocks.append({"channels": channels, "kernel": 3, "pool": pool})
        height, width = height // pool, width // pool
        channels = min(channels * 2, _MAX_DEFAULT_CHANNELS)
    return blocks


def default_config(architecture: str, input_shape: Sequence[int], outputs: int) -> dict[str, Any]:
    """A config that trains well on samples of ``input_shape`` with ``outputs`` outputs.

    Raises ``UnknownArchitecture``, or ``ShapeMismatch`` when the samples cannot feed it.
    """
    shape = _checked_shape(architecture, input_shape, outputs)
    config: dict[str, Any] = _io_fields(architecture, shape, outputs)
    if architecture == "mlp":
        config.update(hidden=_dense_widths(config["input_dim"]), dropout=0.1)
    elif architecture == "cnn":
        config["blocks"] = _conv_blocks(shape[1], shape[2])
        config.update(hidden=[128], dropout=0.2)
    else:
        config.update(cell="lstm", hidden_size=64, num_layers=1)
    return config


def fit_config(
    architecture: str,
    config: Mapping[str, Any],
    input_shape: Sequence[int],
    outputs: int,
) -> dict[str, Any]:
    """Complete ``config`` for the dataset without overriding anything it sets.

    The input/output fields come from the dataset; other fields the architecture requires
    (cnn ``blocks``, rnn ``cell`` and ``hidden_size``) come from ``default_config``. A given
    input/output field that disagrees with the dataset raises ``ShapeMismatch``; an rnn
    ``seq_len`` of ``None`` (any length) is kept. The result still needs ``parse_config``.
    """
    shape = _checked_shape(architecture, input_shape, outputs)
    io_fields = _io_fields(architecture, shape, outputs)
    for name, needed in io_fields.items():
        given = config.get(name)
        if name in config and given != needed and not (name == "seq_len" and given is None):
            raise ShapeMismatch(
                f"the config sets {name}={given!r}, but samples of shape {_shape_text(shape)} "
                f"with {outputs} output(s) need {name}={needed}"
            )
    fitted = dict(config)
    for name, value in io_fields.items():
        fitted.setdefault(name, value)
    required = get_architecture(architecture).config_model.model_fields
    for name, value in default_config(architecture, shape, outputs).items():
        if name in required and required[name].is_required():
            fitted.setdefault(name, value)
    return fitted


def recommended_hyperparameters(architecture: str, rows: int) -> dict[str, Any]:
    """``epochs``, ``learning_rate`` and ``batch_size`` for a dataset of ``rows`` rows.

    Small datasets get smaller batches and more epochs, so that every run takes about the
    number of optimizer steps the architecture needed to converge on the built-in datasets
    with the default 70% training split.
    """
    get_architecture(architecture)
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    batch_size = 16 if rows < 400 else 32 if rows < 1000 else 64
    steps_per_epoch = math.ceil(max(1, round(rows * _TRAIN_SHARE)) / batch_size)
    epochs = math.ceil(_TARGET_STEPS[architecture] / steps_per_epoch)
    return {
        "epochs": min(_MAX_EPOCHS, max(_MIN_EPOCHS, epochs)),
        "learning_rate": _LEARNING_RATES[architecture],
        "batch_size": batch_size,
    }
