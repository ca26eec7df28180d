"""Recurrent network for sequence classification / regression."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from aiaas.ml.architectures.base import (
    MAX_LAYERS,
    MAX_SEQ_LEN,
    MAX_WIDTH,
    Architecture,
    ArchitectureConfig,
    InputSpec,
    config_error,
)
from aiaas.ml.errors import ConfigErrorItem

Cell = Literal["lstm", "gru", "rnn"]

_CELLS: Final[dict[str, Callable[..., nn.RNNBase]]] = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn": nn.RNN,
}
# Gate count per cell: each gate has its own input and hidden weights and two biases.
_GATES: Final[dict[str, int]] = {"lstm": 4, "gru": 3, "rnn": 1}


class RNNConfig(ArchitectureConfig):
    """A recurrent stack over ``[seq_len, input_size]``; the last step feeds a linear head."""

    cell: Cell = Field(..., description="Recurrent cell type: lstm, gru or a plain tanh rnn.")
    input_size: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Features per time step of the input."
    )
    hidden_size: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Hidden state size of each recurrent layer."
    )
    num_layers: int = Field(1, ge=1, le=MAX_LAYERS, description="Stacked recurrent layers.")
    bidirectional: bool = Field(
        False, description="Also run each layer backwards and concatenate both directions."
    )
    seq_len: int | None = Field(
        ...,
        ge=1,
        le=MAX_SEQ_LEN,
        description="Fixed number of time steps, or null to accept any length "
        "(all sequences within one batch still share a length).",
    )
    output_dim: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Number of outputs (classes or regression values)."
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout probability between stacked recurrent layers (needs num_layers >= 2).",
    )

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1


class SequenceModel(nn.Module):
    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.hidden_size = config.hidden_size
        self.bidirectional = config.bidirectional
        self.rnn = _CELLS[config.cell](
            config.input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.head = nn.Linear(config.hidden_size * config.directions, config.output_dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.rnn(x)[0]
        if self.bidirectional:
            # The backward direction has read the whole sequence when it reaches step 0,
            # so that is its summary, not the last step.
            forward_last = out[:, -1, : self.hidden_size]
            backward_first = out[:, 0, self.hidden_size :]
            features = torch.cat([forward_last, backward_first], dim=1)
        else:
            features = out[:, -1]
        result: Tensor = self.head(features)
        return result


class RNNArchitecture(Architecture[RNNConfig]):
    name = "rnn"
    description = (
        "Recurrent network (LSTM, GRU or plain RNN) over sequences of shape "
        "[seq_len, input_size]; the final step's output goes through a linear head."
    )
    config_model = RNNConfig
    _example_config = {
        "cell": "lstm",
        "input_size": 1,
        "hidden_size": 32,
        "seq_len": 50,
        "output_dim": 3,
    }

    def check(self, config: RNNConfig) -> list[ConfigErrorItem]:
        if config.dropout > 0 and config.num_layers < 2:
            # PyTorch only applies it between layers and would warn; refuse the no-op instead.
            msg = "dropout is applied between recurrent layers, so it needs num_layers >= 2"
            return [config_error(["dropout"], msg, "dropout_needs_layers")]
        return []

    def build(self, config: RNNConfig) -> nn.Module:
        return SequenceModel(config)

    def input_spec(self, config: RNNConfig) -> InputSpec:
        return InputSpec(shape=(config.seq_len, config.input_size))

    def activation_count(self, config: RNNConfig, *, seq_len: int) -> int:
        steps = config.seq_len or seq_len
        gates, hidden, dirs = _GATES[config.cell], config.hidden_size, config.directions
        # Per step and layer: the gates and the hidden (and cell) state of each direction.
        per_step = config.input_size + config.num_layers * dirs * hidden * (gates + 2)
        return steps * per_step + config.output_dim

    def parameter_count(self, config: RNNConfig) -> int:
        gates, hidden, dirs = _GATES[config.cell], config.hidden_size, config.directions
        total = 0
        for layer in range(config.num_layers):
            layer_input = config.input_size if layer == 0 else hidden * dirs
            total += dirs * gates * hidden * (layer_input + hidden + 2)
        return total + hidden * dirs * config.output_dim + config.output_dim
