"""Standardization that the loop trains with and the returned weights no longer need.

Scaling that helps optimization is trained with and then folded into the weights: input
standardization into the first ``nn.Linear`` (MLPs), target standardization into the last
one (regression). The returned state dict therefore serves raw inputs to raw outputs with a
plain forward pass. A scaling is a ``(mean, std)`` pair of float64 column tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def input_linear(model: nn.Module, features: int) -> nn.Linear | None:
    """The first layer, when it is a Linear reading the flattened sample (an MLP)."""
    first = next((m for m in model.modules() if _has_parameters(m)), None)
    if isinstance(first, nn.Linear) and first.in_features == features and first.bias is not None:
        return first
    return None


def output_linear(model: nn.Module, outputs: int) -> nn.Linear | None:
    # The families in ``architectures`` all end in a Linear registered last.
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features == outputs and linears[-1].bias is not None:
        return linears[-1]
    return None


def standardize(values: npt.NDArray[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and stds (float64); a near-constant column keeps std 1, as sklearn does."""
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std = np.where(std < 1e-8 * np.maximum(1.0, np.abs(mean)), 1.0, std)
    return torch.from_numpy(mean), torch.from_numpy(std)


def scaled(
    values: npt.NDArray[Any], scaling: tuple[torch.Tensor, torch.Tensor] | None
) -> npt.NDArray[Any]:
    """``values`` standardized in float64, handed to the model as float32."""
    if scaling is None:
        return values
    out: npt.NDArray[Any] = (values - scaling[0].numpy()) / scaling[1].numpy()
    return out.astype(np.float32)


@torch.no_grad()
def fold_input(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = scaling
    weight = layer.weight.double() / std.to(layer.weight.device)
    bias = layer.bias.double() - weight @ mean.to(layer.weight.device)
    layer.weight.copy_(weight)
    layer.bias.copy_(bias)


@torch.no_grad()
def fold_output(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = (t.to(layer.weight.device) for t in scaling)
    layer.weight.copy_(layer.weight.double() * std[:, None])
    layer.bias.copy_(layer.bias.double() * std + mean)


@torch.no_grad()
def unfold_input(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The inverse of ``fold_input``: the layer then takes standardized inputs and gives what
    it gave for raw ones (a fine-tuned base version has its own scaling folded in)."""
    mean, std = (t.to(layer.weight.device) for t in scaling)
    weight = layer.weight.double()
    layer.bias.copy_(layer.bias.double() + weight @ mean)
    layer.weight.copy_(weight * std)


@torch.no_grad()
def unfold_output(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = (t.to(layer.weight.device) for t in scaling)
    layer.weight.copy_(layer.weight.double() / std[:, None])
    layer.bias.copy_((layer.bias.double() - mean) / std)
