"""Small served models for the serving tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from aiaas.ml.architectures import ARCHITECTURES, build_model, input_spec, parse_config
from aiaas.ml.task import Task
from aiaas.ml.weights import save_safetensors
from aiaas.serving import ModelRuntime, ServingSpec


def make_spec(
    architecture: str,
    config: dict[str, Any] | None = None,
    *,
    task: Task = "classification",
    labels: tuple[str, ...] | None = None,
    weights: str | None = None,
) -> ServingSpec:
    raw = config if config is not None else ARCHITECTURES[architecture].example_config
    parsed = parse_config(architecture, raw, max_parameters=10**9)
    return ServingSpec(
        weights=weights or f"sha-{architecture}",
        architecture=architecture,
        config=raw,
        task=task,
        labels=labels,
        input_shape=input_spec(architecture, parsed).shape,
    )


def sample_shape(spec: ServingSpec, length: int = 8) -> tuple[int, ...]:
    """One sample's shape, with ``length`` for variable axes."""
    return tuple(length if dim is None else dim for dim in spec.input_shape)


def make_module(spec: ServingSpec, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = parse_config(spec.architecture, spec.config, max_parameters=10**9)
    return build_model(spec.architecture, config).eval()


def load_runtime(
    spec: ServingSpec, device: str = "cpu", module: nn.Module | None = None
) -> tuple[ModelRuntime, nn.Module]:
    module = module if module is not None else make_module(spec)
    runtime = ModelRuntime.load(spec, save_safetensors(module), device=torch.device(device))
    return runtime, module
