"""Model families the platform can build from a validated config.

Typical flow: ``parse_config`` (validation, layer checks and the parameter limit, all
before any tensor is allocated) -> ``build_model`` -> ``weights.load_weights_into``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError
from torch import nn

from aiaas.ml.architectures.base import (
    Architecture,
    ArchitectureConfig,
    InputSpec,
    count_parameters,
)
from aiaas.ml.architectures.cnn import CNNArchitecture, CNNConfig, ConvBlock
from aiaas.ml.architectures.mlp import MLPArchitecture, MLPConfig
from aiaas.ml.architectures.rnn import RNNArchitecture, RNNConfig
from aiaas.ml.errors import ConfigErrorItem, ConfigInvalid, UnknownArchitecture
from aiaas.ml.limits import LIMITS, MB

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "ArchitectureConfig",
    "CNNConfig",
    "ConvBlock",
    "InputSpec",
    "MLPConfig",
    "RNNConfig",
    "build_model",
    "count_parameters",
    "get_architecture",
    "input_spec",
    "parameter_count",
    "parse_config",
]

ARCHITECTURES: Final[dict[str, Architecture[Any]]] = {
    arch.name: arch for arch in (MLPArchitecture(), CNNArchitecture(), RNNArchitecture())
}


def get_architecture(name: str) -> Architecture[Any]:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitecture(name, ARCHITECTURES) from None


def _pydantic_errors(exc: ValidationError) -> list[ConfigErrorItem]:
    # include_input/include_context off: the raw value must never be echoed back.
    return [
        {"loc": ["config", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def activation_bytes(architecture: str, config: BaseModel) -> int:
    """Bytes (float32) one example's forward pass produces; a variable sequence counts at
    the longest one accepted."""
    arch, config = _checked(architecture, config)
    return 4 * arch.activation_count(config, seq_len=LIMITS.max_sequence_length)


def parse_config(
    architecture: str,
    raw: Mapping[str, Any],
    *,
    max_parameters: int,
    compute_limits: bool = True,
) -> BaseModel:
    """Validate ``raw`` for ``architecture`` and refuse models over ``max_parameters``, over
    the activation memory of one example or over the sequence length limit.

    ``compute_limits=False`` skips the activation and sequence limits: for configs accepted
    before (loading a registered version, resuming a training), which a limit lowered since
    must not make unservable. Raises ``UnknownArchitecture`` or ``ConfigInvalid``; nothing is
    allocated here.
    """
    arch = get_architecture(architecture)
    data = dict(raw) if isinstance(raw, Mapping) else raw
    try:
        config: BaseModel = arch.config_model.model_validate(data)
    except ValidationError as exc:
        # from None: the chained pydantic error would carry the raw input into logs.
        raise ConfigInvalid(_pydantic_errors(exc)) from None
    problems = arch.check(config)
    if problems:
        raise ConfigInvalid(problems)
    count = arch.parameter_count(config)
    if count > max_parameters:
        msg = f"the model would have {count} parameters, over the limit of {max_parameters}"
        raise ConfigInvalid([{"loc": ["config"], "msg": msg, "type": "too_many_parameters"}])
    if not compute_limits:
        return config
    seq_len = getattr(config, "seq_len", None)
    if isinstance(seq_len, int) and seq_len > LIMITS.max_sequence_length:
        msg = f"seq_len {seq_len} is over the limit of {LIMITS.max_sequence_length} steps"
        raise ConfigInvalid([{"loc": ["config", "seq_len"], "msg": msg, "type": "too_long"}])
    need = 4 * arch.activation_count(config, seq_len=LIMITS.max_sequence_length)
    if need > LIMITS.max_activation_bytes:
        msg = (
            f"one example's activations would take {need / MB:,.1f} MB, over the limit of "
            f"{LIMITS.max_activation_bytes / MB:g} MB"
        )
        raise ConfigInvalid([{"loc": ["config"], "msg": msg, "type": "too_much_memory"}])
    return config


def _checked(architecture: str, config: BaseModel) -> tuple[Architecture[Any], BaseModel]:
    arch = get_architecture(architecture)
    if not isinstance(config, arch.config_model):
        raise TypeError(
            f"{architecture!r} needs a {arch.config_model.__name__}, got {type(config).__name__}"
        )
    # Configs built directly (not via parse_config) have not had the layer checks yet.
    problems = arch.check(config)
    if problems:
        raise ConfigInvalid(problems)
    return arch, config


def build_model(architecture: str, config: BaseModel) -> nn.Module:
    """A freshly initialised module (in training mode, as PyTorch builds it)."""
    arch, config = _checked(architecture, config)
    return arch.build(config)


def input_spec(architecture: str, config: BaseModel) -> InputSpec:
    arch, config = _checked(architecture, config)
    return arch.input_spec(config)


def parameter_count(architecture: str, config: BaseModel) -> int:
    """Analytic parameter count of the model ``config`` describes, without building it."""
    arch, config = _checked(architecture, config)
    return arch.parameter_count(config)
