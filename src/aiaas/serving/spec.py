"""What a worker needs to know to serve one model version, in a form that travels."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast, get_args

Task = Literal["classification", "regression"]
_TASKS: Final = frozenset(get_args(Task))
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ServingSpec:
    """One servable model version.

    Equality and hashing use ``key`` (the sha256 of the weights) alone: two specs with the
    same weights describe the same runtime, and the config (a nested mapping) is not
    hashable anyway.
    """

    key: str
    architecture: str = field(compare=False)
    config: Mapping[str, Any] = field(compare=False)
    task: Task = field(compare=False)
    labels: tuple[str, ...] | None = field(compare=False)
    input_shape: tuple[int | None, ...] = field(compare=False)
    max_batch_size: int = field(default=64, compare=False)
    max_delay_ms: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("key must not be empty")
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, for a task message."""
        return {
            "key": self.key,
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
            config = data["config"]
            labels = data.get("labels")
            shape = data["input_shape"]
            spec = cls(
                key=_typed(data["key"], str, "key"),
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
