"""The data as the loop uses it: split, shaped for the model, scaled, on the device.

A new run measures its scalings on the training rows; a resumed run takes them from its
checkpoint, so that it goes on training on exactly the numbers it started with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aiaas.ml.errors import CheckpointInvalid
from aiaas.ml.training.checkpoint import Checkpoint, check_resume
from aiaas.ml.training.data import Hyperparameters, TrainingData
from aiaas.ml.training.scaling import (
    input_linear,
    output_linear,
    scaled,
    standardize,
    unfold_input,
    unfold_output,
)
from aiaas.ml.training.splits import split_indices


@dataclass
class Prepared:
    """The split rows, the raw arrays evaluation reads, and the scaled tensors training reads."""

    train_rows: npt.NDArray[np.int64]
    val_rows: npt.NDArray[np.int64]
    test_rows: npt.NDArray[np.int64]
    x: npt.NDArray[np.float32]  # raw, flattened for an MLP
    y: npt.NDArray[Any]  # int64 [N], or float32 [N, k]
    first: nn.Linear | None  # where input scaling is folded
    last: nn.Linear | None  # where target scaling is folded
    input_scaling: tuple[torch.Tensor, torch.Tensor] | None
    target_scaling: tuple[torch.Tensor, torch.Tensor] | None
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def prepare(
    model: nn.Module,
    data: TrainingData,
    hp: Hyperparameters,
    device: torch.device,
    resume: Checkpoint | None,
    from_base: bool,
) -> Prepared:
    train_rows, val_rows, test_rows = split_indices(
        data, val_fraction=hp.val_fraction, test_fraction=hp.test_fraction, seed=hp.seed
    )
    x = np.asarray(data.x, dtype=np.float32)
    features = math.prod(x.shape[1:])
    first = input_linear(model, features)
    if first is not None:
        x = x.reshape(len(x), features)
    y: npt.NDArray[Any]
    if data.task == "classification":
        y, last = np.asarray(data.y, dtype=np.int64), None
    else:
        y = np.asarray(data.y, dtype=np.float32).reshape(len(x), -1)
        last = output_linear(model, data.outputs)
    if resume is None:
        input_scaling = standardize(x[train_rows]) if first is not None else None
        target_scaling = standardize(y[train_rows]) if last is not None else None
        if from_base:
            # Trained weights map raw inputs to raw outputs: make them take the scaled data
            # the loop feeds, so that epoch 0 is exactly the base model.
            if first is not None and input_scaling is not None:
                unfold_input(first, input_scaling)
            if last is not None and target_scaling is not None:
                unfold_output(last, target_scaling)
    else:
        check_resume(resume, hp, len(x))
        input_scaling, target_scaling = resume.input_scaling, resume.target_scaling
        if (input_scaling is None) != (first is None) or (target_scaling is None) != (last is None):
            raise CheckpointInvalid("it was made for a model of another architecture")

    x_scaled, y_scaled = scaled(x, input_scaling), scaled(y, target_scaling)

    def on_device(array: npt.NDArray[Any], rows: npt.NDArray[np.int64]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)

    return Prepared(
        train_rows=train_rows,
        val_rows=val_rows,
        test_rows=test_rows,
        x=x,
        y=y,
        first=first,
        last=last,
        input_scaling=input_scaling,
        target_scaling=target_scaling,
        x_train=on_device(x_scaled, train_rows),
        y_train=on_device(y_scaled, train_rows),
        x_val=on_device(x_scaled, val_rows),
        y_val=on_device(y_scaled, val_rows),
    )
