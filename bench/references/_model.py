"""The benchmark's models in plain torch, with the platform's state-dict layout.

The references load the very safetensors file the platform is given, with
``load_state_dict(strict=True)``, so a layout drift fails loudly instead of serving a
different network. The model is read from ``BENCH_SPEC`` (the platform's version spec,
JSON) and ``BENCH_WEIGHTS`` (a safetensors path); torch runs on one thread.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn


class MLP(nn.Module):
    """Linear layers with ReLU between them (the platform's ``mlp`` family)."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        self.linears = nn.ModuleList(
            nn.Linear(fan_in, fan_out) for fan_in, fan_out in itertools.pairwise(widths)
        )

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < last:
                x = torch.relu(x)
        return x


class CNN(nn.Module):
    """Conv -> ReLU -> MaxPool(2) blocks, then a dense head (the platform's ``cnn`` family)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        convs = []
        channels, height, width = config["in_channels"], config["height"], config["width"]
        for block in config["blocks"]:
            kernel = block["kernel"]
            pad = kernel // 2
            convs.append(nn.Conv2d(channels, block["channels"], kernel, padding=pad))
            channels = block["channels"]
            height = (height + 2 * pad - kernel + 1) // 2
            width = (width + 2 * pad - kernel + 1) // 2
        self.convs = nn.ModuleList(convs)
        widths = [channels * height * width, *config.get("hidden", []), config["output_dim"]]
        self.head = MLP(widths)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.max_pool2d(torch.relu(conv(x)), 2)
        out: Tensor = self.head(x.flatten(1))
        return out


def build(spec: dict[str, Any]) -> nn.Module:
    config = spec["config"]
    if spec["architecture"] == "mlp":
        return MLP([config["input_dim"], *config.get("hidden", []), config["output_dim"]])
    if spec["architecture"] == "cnn":
        return CNN(config)
    raise ValueError(f"no reference model for {spec['architecture']!r}")


def load_model(spec_json: str | None = None, weights: str | None = None) -> nn.Module:
    """The model named by the arguments, or by ``BENCH_SPEC``/``BENCH_WEIGHTS``, in eval mode."""
    torch.set_num_threads(1)
    spec = json.loads(spec_json or os.environ["BENCH_SPEC"])
    model = build(spec)
    model.load_state_dict(load_file(weights or os.environ["BENCH_WEIGHTS"]), strict=True)
    return model.eval()
