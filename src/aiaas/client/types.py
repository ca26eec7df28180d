"""The SDK's own typed results: plain dataclasses built from the API's JSON.

Unknown fields are ignored, so a newer server adding fields never breaks an older SDK; every
field the server may leave out has a default. Timestamps become aware ``datetime``s.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    role: str = "user"
    created_at: datetime | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked: bool = False
    key: str | None = field(default=None, repr=False)
    """The secret: set only on the answer to ``keys.create``, shown that once."""


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    task: str
    description: str = ""
    labels: list[str] | None = None
    visibility: str = "private"
    capture_inputs: bool = False
    owned: bool = True
    latest_version: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Version:
    version: int
    architecture: str
    config: dict[str, Any]
    input: dict[str, Any]
    labels: list[str] | None = None
    parameters: int = 0
    sha256: str = ""
    size_bytes: int = 0
    created_at: datetime | None = None
    metrics: dict[str, Any] | None = None
    aliases: list[str] = field(default_factory=list)
    max_batch_size: int | None = None
    max_delay_ms: float | None = None


@dataclass(frozen=True)
class ModelCard:
    """A version's card; ``not_recorded`` names what the platform has no record of."""

    model: str
    version: int
    task: str
    source: str
    architecture: str
    config: dict[str, Any]
    parameters: int
    input: dict[str, Any]
    aliases: list[str] = field(default_factory=list)
    labels: list[str] | None = None
    training: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    created_at: datetime | None = None
    created_by: dict[str, Any] = field(default_factory=dict)
    intended_use: str | None = None
    limitations: str | None = None
    not_recorded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Alias:
    alias: str
    version: int
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    config_schema: dict[str, Any]
    example_config: dict[str, Any]
    input: dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    task: str
    source: str
    rows: int
    input_shape: list[int]
    classes: list[str | int] | None = None
    description: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class PredictResult:
    """A synchronous prediction: ``outputs`` (probabilities for a classifier, values for a
    regressor) one row per input row, and ``predictions``: class names or indices, or values.
    """

    outputs: np.ndarray
    predictions: list[Any]
    model: str
    version: int
    id: str | None = None


@dataclass(frozen=True)
class ExplainResult:
    """Feature attributions: ``attributions`` shaped like the inputs (batch first), and per
    row the ``target`` explained, the ``predictions`` and ``outputs`` predict gives, and for
    integrated gradients the ``completeness_gap``."""

    attributions: np.ndarray
    target: list[Any]
    predictions: list[Any]
    outputs: np.ndarray
    method: str
    model: str
    version: int
    completeness_gap: list[float] | None = None


@dataclass(frozen=True)
class Webhook:
    url: str
    attempts: int = 0
    last_status: int | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class Prediction:
    """An asynchronous prediction job."""

    id: str
    status: str
    model: str
    version: int
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: list[Any] | None = None
    predictions: list[Any] | None = None
    error: str | None = None
    webhook: Webhook | None = None
    timings: dict[str, float | None] = field(default_factory=dict)
    feedback: list[Any] | None = None
    expired_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Training:
    id: str
    status: str
    model: str
    dataset: str | list[str]
    architecture: str
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    epoch: int = 0
    epochs: int = 0
    progress: float = 0.0
    base_version: int | None = None
    metrics: dict[str, Any] | None = None
    version: int | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class TrainingEvent:
    """One server-sent event of a training: ``epoch`` (epoch, epochs, train_loss, val_loss,
    metrics, progress, eta_s in ``data``) or the last one, ``end`` (status, version)."""

    id: int
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class UsageBucket:
    start: datetime
    predictions: int
    rows: int
    compute_s: float
    errors: int


@dataclass(frozen=True)
class ModelUsage:
    model: str
    model_id: str
    buckets: list[UsageBucket]
    totals: UsageBucket


@dataclass(frozen=True)
class Usage:
    to: datetime
    granularity: str
    models: list[ModelUsage]
    trainings: dict[str, Any]
    stored_bytes: dict[str, int]
    start: datetime | None = None


FINISHED = frozenset({"succeeded", "failed", "canceled"})


def build(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from a JSON object: known fields only, each
    converted to its annotation (timestamps, nested dataclasses, lists of them)."""
    hints = _hints(typing.cast(Hashable, cls))
    values = {name: _convert(hints[name], data[name]) for name in hints if name in data}
    return cls(**values)


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return build(typing.cast(type[Any], hint), value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint)
        return [_convert(item, v) for v in value]
    return value
