"""Exceptions raised by ``aiaas.ml``.

They carry structured, client-safe details (never the raw input values) so that the
gateway can map them to HTTP responses without knowing anything about PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypedDict


class ConfigErrorItem(TypedDict):
    """One problem with an architecture config, shaped like a pydantic error."""

    loc: list[str | int]
    msg: str
    type: str


class WeightsErrorItem(TypedDict):
    """One problem with an uploaded tensor, located as ``["weights", <tensor name>]``."""

    loc: list[str]
    msg: str
    type: str
    expected_shape: list[int] | None
    got_shape: list[int] | None


class MLError(Exception):
    """Base class of every error ``aiaas.ml`` raises on purpose."""


class UnknownArchitecture(MLError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown architecture {name!r}; known architectures: {', '.join(self.known)}"
        )


class ConfigInvalid(MLError):
    def __init__(self, errors: Sequence[ConfigErrorItem]) -> None:
        self.errors: list[ConfigErrorItem] = list(errors)
        summary = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in self.errors
        )
        super().__init__(f"invalid architecture config: {summary}")


class NotSafetensors(MLError):
    """The uploaded bytes are not a well-formed safetensors file."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"not a valid safetensors file: {reason}")


class WeightsMismatch(MLError):
    """The tensors are valid safetensors but do not fit the model's layout."""

    def __init__(self, errors: Sequence[WeightsErrorItem]) -> None:
        self.errors: list[WeightsErrorItem] = list(errors)
        super().__init__(f"weights do not match the model: {len(self.errors)} problem(s)")


class InputErrorItem(TypedDict):
    """One problem with a prediction request's inputs, shaped like a pydantic error."""

    loc: list[str | int]
    msg: str
    type: str
    expected: str | None
    got: str | None


class InputInvalid(MLError):
    """A prediction request's inputs cannot be turned into a batch for the model.

    ``loc`` names the place (``["inputs", 3, 1]`` is ``inputs[3][1]``); ``expected`` and
    ``got`` are short human descriptions such as ``"shape [n, 4]"`` or ``"a boolean"``.
    """

    def __init__(
        self,
        msg: str,
        *,
        loc: Sequence[str | int],
        expected: str | None = None,
        got: str | None = None,
        type: str = "invalid_input",
    ) -> None:
        self.msg = msg
        self.loc: list[str | int] = list(loc)
        self.expected = expected
        self.got = got
        self.type = type
        super().__init__(msg)

    def to_error(self) -> InputErrorItem:
        return {
            "loc": list(self.loc),
            "msg": self.msg,
            "type": self.type,
            "expected": self.expected,
            "got": self.got,
        }


class ShapeMismatch(MLError):
    """A dataset's sample shape cannot feed the architecture (or the config given for it)."""

    def __init__(self, msg: str) -> None:
        self.msg = msg
        super().__init__(msg)


class Canceled(MLError):
    """``should_stop`` asked the run to stop; ``epochs_completed`` epochs had finished."""

    def __init__(self, *, epochs_completed: int = 0) -> None:
        self.epochs_completed = epochs_completed
        super().__init__(f"training was canceled after {epochs_completed} epoch(s)")


class Diverged(MLError):
    """The training loss became NaN or infinite; a smaller learning rate usually helps."""

    def __init__(self, *, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(
            f"the training loss became non-finite in epoch {epoch}; "
            "try a smaller learning rate or standardized inputs"
        )


class CheckpointInvalid(MLError):
    """Bytes that are not a training checkpoint, or one from a different run."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot resume from this checkpoint: {reason}")
