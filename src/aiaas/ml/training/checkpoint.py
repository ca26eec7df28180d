"""The checkpoint format: a run's whole state after an epoch, as one safetensors file.

Tensors (weights, optimizer moments, RNG states, scalings) are stored as tensors; the rest
travels as JSON in the file's metadata under a versioned key, so a checkpoint stays a plain
safetensors file that ``weights.load_safetensors`` validates like any other upload.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import safetensors.torch
import torch

from aiaas.ml.errors import CheckpointInvalid
from aiaas.ml.training.data import Hyperparameters
from aiaas.ml.weights import load_safetensors

History = list[dict[str, float | int | None]]

_CHECKPOINT_KEY: Final = "aiaas.checkpoint"
_CHECKPOINT_VERSION: Final = 1
# Settings a resumed run may change: more epochs, or a different patience, extend the same
# trajectory. Any other difference would make the resumed run a different experiment.
_RESUMABLE_CHANGES: Final = frozenset({"epochs", "early_stopping_patience"})


@dataclass
class Checkpoint:
    """Everything needed to carry on after ``epoch`` exactly as an uninterrupted run would.

    Losses of regression runs are in standardized target units (``target_scaling``).
    """

    epoch: int
    model_state: dict[str, torch.Tensor]
    # Per-parameter optimizer state; its hyperparameters come from ``hyperparameters``.
    optimizer_state: dict[int, dict[str, Any]]
    rng_state: torch.Tensor
    shuffle_state: torch.Tensor
    history: History
    best_state: dict[str, torch.Tensor] | None
    best_val_loss: float | None
    epochs_since_best: int
    input_scaling: tuple[torch.Tensor, torch.Tensor] | None  # (mean, std), float64
    target_scaling: tuple[torch.Tensor, torch.Tensor] | None
    hyperparameters: dict[str, Any]
    rows: int
    cuda_rng_state: torch.Tensor | None = None

    def to_bytes(self) -> bytes:
        """A safetensors file: the tensors, plus the rest as JSON in its metadata."""
        tensors = {f"model.{k}": v for k, v in self.model_state.items()}
        tensors |= {f"best.{k}": v for k, v in (self.best_state or {}).items()}
        optimizer: dict[str, dict[str, Any]] = {}
        for index, entries in self.optimizer_state.items():
            layout = optimizer.setdefault(str(index), {})
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{index}.{key}"] = value
                    layout[key] = {"tensor": True}
                else:
                    layout[key] = {"value": value}
        tensors["rng.global"] = self.rng_state
        tensors["rng.shuffle"] = self.shuffle_state
        if self.cuda_rng_state is not None:
            tensors["rng.cuda"] = self.cuda_rng_state
        for name, scaling in (("input", self.input_scaling), ("target", self.target_scaling)):
            if scaling is not None:
                tensors[f"scale.{name}.mean"], tensors[f"scale.{name}.std"] = scaling
        meta = {
            "version": _CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "history": self.history,
            "has_best": self.best_state is not None,
            "best_val_loss": self.best_val_loss,
            "epochs_since_best": self.epochs_since_best,
            "hyperparameters": self.hyperparameters,
            "rows": self.rows,
            "optimizer": optimizer,
        }
        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        out: bytes = safetensors.torch.save(cpu, metadata={_CHECKPOINT_KEY: json.dumps(meta)})
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Read ``to_bytes`` output; raise ``NotSafetensors`` or ``CheckpointInvalid``."""
        tensors = load_safetensors(data)
        # load_safetensors has validated the header, so it can be read without checks.
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
        raw = header.get("__metadata__", {}).get(_CHECKPOINT_KEY)
        if raw is None:
            raise CheckpointInvalid("the file is not a training checkpoint")
        try:
            meta = json.loads(raw)
            if meta["version"] != _CHECKPOINT_VERSION:
                raise CheckpointInvalid(f"unsupported checkpoint version {meta['version']!r}")
            optimizer = {
                int(index): {
                    key: tensors[f"optim.{index}.{key}"] if "tensor" in entry else entry["value"]
                    for key, entry in layout.items()
                }
                for index, layout in meta["optimizer"].items()
            }

            def group(prefix: str) -> dict[str, torch.Tensor]:
                return {
                    k.removeprefix(prefix): v
                    for k, v in tensors.items()
                    if k[: len(prefix)] == prefix
                }

            def scaling(name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
                if f"scale.{name}.mean" not in tensors:
                    return None
                return tensors[f"scale.{name}.mean"], tensors[f"scale.{name}.std"]

            return cls(
                epoch=int(meta["epoch"]),
                model_state=group("model."),
                optimizer_state=optimizer,
                rng_state=tensors["rng.global"],
                shuffle_state=tensors["rng.shuffle"],
                history=list(meta["history"]),
                best_state=group("best.") if meta["has_best"] else None,
                best_val_loss=meta["best_val_loss"],
                epochs_since_best=int(meta["epochs_since_best"]),
                input_scaling=scaling("input"),
                target_scaling=scaling("target"),
                hyperparameters=dict(meta["hyperparameters"]),
                rows=int(meta["rows"]),
                cuda_rng_state=tensors.get("rng.cuda"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointInvalid(f"malformed checkpoint metadata ({exc!r})") from None


def check_resume(checkpoint: Checkpoint, hp: Hyperparameters, rows: int) -> None:
    """Raise ``CheckpointInvalid`` unless resuming would continue the run it was made in."""
    if checkpoint.rows != rows:
        raise CheckpointInvalid(f"it was made on {checkpoint.rows} rows, this data has {rows}")
    current = asdict(hp)
    for name in (f.name for f in fields(hp)):
        if name in _RESUMABLE_CHANGES:
            continue
        if checkpoint.hyperparameters.get(name) != current[name]:
            raise CheckpointInvalid(
                f"it was made with {name}={checkpoint.hyperparameters.get(name)!r}, "
                f"this run has {name}={current[name]!r}"
            )
