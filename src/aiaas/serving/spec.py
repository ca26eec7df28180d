"""What a worker needs to know to serve one model version, in a form that travels."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast, get_args

import orjson

from aiaas.ml.task import Task

_TASKS: Final = frozenset(get_args(Task))
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, eq=False)
class ServingSpec:
    """One servable model version.

    ``weights`` is the sha256 of the safetensors blob: where the bytes are stored, nothing
    more. Two versions may share those bytes and still compute different things (another
    config, task or label list), possibly in two accounts, so nothing that is shared between
    requests is keyed by the weights alone:

    - ``runtime_key`` covers everything that changes what a forward pass returns (weights,
      architecture, config, task, labels, input shape): the key of loaded runtimes. The device
      is fixed per process, and so is each process's runtime cache.
    - ``key`` adds the batching knobs: the key of batchers, so that one account's
      ``max_delay_ms`` never delays another account's requests.

    Equality and hashing use ``key``.
    """

    weights: str
    architecture: str
    config: Mapping[str, Any]
    task: Task
    labels: tuple[str, ...] | None
    input_shape: tuple[int | None, ...]
    max_batch_size: int = 64
    max_delay_ms: float = 0.0
    runtime_key: str = field(init=False, repr=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("weights must not be empty")
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {sorted(_TASKS)}, got {self.task!r}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not (math.isfinite(self.max_delay_ms) and self.max_delay_ms >= 0):
            raise ValueError(f"max_delay_ms must be finite and >= 0, got {self.max_delay_ms}")
        if any(dim is not None and dim < 1 for dim in self.input_shape):
            raise ValueError(f"input_shape dimensions must be >= 1 or None: {self.input_shape}")
        # A private deep copy (typed read-only): the spec is shared between threads and
        # outlives the request, so later edits to the caller's dict must not reach it.
        # A plain dict rather than a MappingProxyType keeps the spec picklable.
        object.__setattr__(self, "config", copy.deepcopy(dict(self.config)))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
        computation = {
            "weights": self.weights,
            "architecture": self.architecture,
            "config": self.config,
            "task": self.task,
            "labels": self.labels,
            "input_shape": self.input_shape,
        }
        runtime_key = _digest(computation)
        object.__setattr__(self, "runtime_key", runtime_key)
        knobs = {
            "runtime": runtime_key,
            "batch": self.max_batch_size,
            "delay": float(self.max_delay_ms),
        }
        object.__setattr__(self, "key", _digest(knobs))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServingSpec) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, for a task message."""
        return {
            "weights": self.weights,
            "architecture": self.architecture,
            "config": copy.deepcopy(dict(self.config)),
            "task": self.task,
            "labels": list(self.labels) if self.labels is not None else None,
            "input_shape": list(self.input_shape),
            "max_batch_size": self.max_batch_size,
            "max_delay_ms": self.max_delay_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingSpec:
        """Inverse of ``to_dict``; raises ``ValueError`` for a malformed message.

        Unknown keys are ignored so that a gateway one version ahead can add fields
        without breaking workers that are still on the older version.
        """
        try:
            # "key" named the weights' sha256 in messages of older gateways.
            weights = data["weights"] if "weights" in data else data["key"]
            config = data["config"]
            labels = data.get("labels")
            shape = data["input_shape"]
            spec = cls(
                weights=_typed(weights, str, "weights"),
                architecture=_typed(data["architecture"], str, "architecture"),
                config=_typed(config, dict, "config"),
                task=cast(Task, _typed(data["task"], str, "task")),
                labels=None if labels is None else tuple(_strings(labels, "labels")),
                input_shape=tuple(_dims(shape)),
                max_batch_size=_typed(data.get("max_batch_size", 64), int, "max_batch_size"),
                max_delay_ms=float(_number(data.get("max_delay_ms", 0.0), "max_delay_ms")),
            )
        except KeyError as exc:
            raise ValueError(f"serving spec is missing {exc.args[0]!r}") from None
        return spec


def _digest(value: Mapping[str, Any]) -> str:
    # Sorted keys: two configs that differ only in key order are one computation.
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _typed(value: Any, kind: type[_T], name: str) -> _T:
    # bool passes isinstance(int); a JSON true is never a valid batch size.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _number(value: Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    return value


def _strings(value: Any, name: str) -> list[str]:
    items = _typed(value, list, name)
    return [_typed(item, str, name) for item in items]


def _dims(value: Any) -> list[int | None]:
    items = _typed(value, list, "input_shape")
    return [None if item is None else _typed(item, int, "input_shape") for item in items]
