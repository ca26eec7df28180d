"""Shared types for the architecture families: configs, input specs, the dense stack."""

from __future__ import annotations

import copy
import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from aiaas.ml.errors import ConfigErrorItem

# Hard caps applied as pydantic constraints: they keep absurd configs from even reaching
# the parameter count, and keep every later integer computation small and fast.
MAX_WIDTH: Final = 65536
MAX_LAYERS: Final = 64
MAX_BLOCKS: Final = 32
MAX_SPATIAL: Final = 4096
MAX_SEQ_LEN: Final = 100_000

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu"]

_ACTIVATIONS: Final[dict[str, type[nn.Module]]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


class ArchitectureConfig(BaseModel):
    """Base of every family's config.

    Strict mode so that ``true`` or ``"5"`` is not silently taken for an integer width,
    and no NaN/inf so that range checks on floats such as dropout cannot be bypassed.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


ConfigT = TypeVar("ConfigT", bound=ArchitectureConfig)


@dataclass(frozen=True)
class InputSpec:
    """Shape of one input sample (no batch axis); ``None`` marks a variable-length axis."""

    shape: tuple[int | None, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


def config_error(loc: Sequence[str | int], msg: str, type_: str) -> ConfigErrorItem:
    return {"loc": ["config", *loc], "msg": msg, "type": type_}


class Architecture(ABC, Generic[ConfigT]):
    """A model family: how to validate, size and build one from its config."""

    name: str
    description: str
    config_model: type[ConfigT]
    _example_config: Mapping[str, Any]

    @property
    def example_config(self) -> dict[str, Any]:
        # A deep copy, so a caller that edits the example cannot change the registry's.
        return copy.deepcopy(dict(self._example_config))

    def config_schema(self) -> dict[str, Any]:
        return self.config_model.model_json_schema()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "config_schema": self.config_schema(),
            "example_config": self.example_config,
        }

    def check(self, config: ConfigT) -> list[ConfigErrorItem]:
        """Cross-field checks pydantic cannot express per field; empty when fine."""
        return []

    @abstractmethod
    def build(self, config: ConfigT) -> nn.Module: ...

    @abstractmethod
    def input_spec(self, config: ConfigT) -> InputSpec: ...

    @abstractmethod
    def activation_count(self, config: ConfigT, *, seq_len: int) -> int:
        """Values one example's forward pass produces, layer by layer (what it holds in memory
        at most, counted without building anything); ``seq_len`` stands for a variable
        sequence axis."""

    @abstractmethod
    def parameter_count(self, config: ConfigT) -> int:
        """Exact parameter count, computed from the config alone without allocating."""


class DenseStack(nn.Module):
    """Linear layers with activation and dropout between them, none after the last.

    Dropout is always present (a no-op at p=0) so the state-dict layout does not depend
    on the dropout setting.
    """

    def __init__(self, widths: Sequence[int], activation: str, dropout: float) -> None:
        super().__init__()
        self.linears = nn.ModuleList(
            nn.Linear(fan_in, fan_out) for fan_in, fan_out in itertools.pairwise(widths)
        )
        self.act = make_activation(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < last:
                x = self.drop(self.act(x))
        return x


def dense_parameter_count(widths: Sequence[int]) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(widths))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
