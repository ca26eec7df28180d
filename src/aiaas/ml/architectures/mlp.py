"""Multi-layer perceptron on flat feature vectors."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import nn

from aiaas.ml.architectures.base import (
    MAX_LAYERS,
    MAX_WIDTH,
    Activation,
    Architecture,
    ArchitectureConfig,
    DenseStack,
    InputSpec,
    dense_parameter_count,
)

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class MLPConfig(ArchitectureConfig):
    """A stack of fully connected layers mapping ``[input_dim]`` to ``[output_dim]``."""

    input_dim: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Number of input features per sample."
    )
    hidden: list[Width] = Field(
        default_factory=list,
        max_length=MAX_LAYERS,
        description="Widths of the hidden layers, in order; empty for a linear model.",
    )
    output_dim: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Number of outputs (classes or regression values)."
    )
    activation: Activation = Field("relu", description="Activation after each hidden layer.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout probability after each hidden layer."
    )

    def widths(self) -> list[int]:
        return [self.input_dim, *self.hidden, self.output_dim]


class MLPArchitecture(Architecture[MLPConfig]):
    name = "mlp"
    description = (
        "Multi-layer perceptron: fully connected layers on a flat feature vector "
        "of shape [input_dim]."
    )
    config_model = MLPConfig
    _example_config = {"input_dim": 64, "hidden": [32], "output_dim": 10}

    def build(self, config: MLPConfig) -> nn.Module:
        return DenseStack(config.widths(), config.activation, config.dropout)

    def input_spec(self, config: MLPConfig) -> InputSpec:
        return InputSpec(shape=(config.input_dim,))

    def activation_count(self, config: MLPConfig, *, seq_len: int) -> int:
        return sum(config.widths())

    def parameter_count(self, config: MLPConfig) -> int:
        return dense_parameter_count(config.widths())
