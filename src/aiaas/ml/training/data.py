"""What a run is given: the rows and their targets, the settings, and the model seeded."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from aiaas.ml.task import Task


@dataclass(frozen=True)
class Hyperparameters:
    """How to train; ``ValueError`` on construction names every setting out of range."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    # sgd uses momentum 0.9: plain SGD is too slow to be a useful choice here.
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    early_stopping_patience: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append("learning_rate must be a positive number")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            problems.append("optimizer must be adam, adamw or sgd")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append("weight_decay must be zero or positive")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            problems.append("val_fraction + test_fraction must leave rows to train on")
        if self.seed < 0:
            problems.append("seed must be zero or positive")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append("early_stopping_patience must be at least 1 (or None)")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class TrainingData:
    x: np.ndarray  # float32 [N, *input_shape]
    y: np.ndarray  # int64 class indices [N], or float32 targets [N] / [N, k]
    task: Task
    classes: list[str] | None  # labels in index order (classification), None for regression

    @property
    def outputs(self) -> int:
        """Model outputs the data needs: one logit per class, or one value per target."""
        if self.classes is not None:
            return len(self.classes)
        return 1 if np.ndim(self.y) == 1 else int(np.shape(self.y)[1])

    def check(self) -> None:
        """Raise ``ValueError`` unless the arrays and the task agree."""
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x must be [rows, *sample_shape] with rows, got {list(x.shape)}")
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
        if self.task == "classification":
            if not self.classes:
                raise ValueError("classification needs the class labels")
            if y.ndim != 1 or y.dtype.kind not in "iu":
                raise ValueError("classification targets must be integer class indices [N]")
            if y.min() < 0 or y.max() >= len(self.classes):
                raise ValueError(f"class indices must lie in 0..{len(self.classes) - 1}")
        elif self.task == "regression":
            if self.classes is not None:
                raise ValueError("regression data has no class labels")
            if y.ndim not in (1, 2) or y.dtype.kind not in "fiu" or not np.isfinite(y).all():
                raise ValueError("regression targets must be finite numbers [N] or [N, k]")
        else:
            raise ValueError(f"unknown task {self.task!r}")


def seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with the CPU RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build()
