"""Small 2-D convolutional network: conv blocks followed by a dense head."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn

from aiaas.ml.architectures.base import (
    MAX_BLOCKS,
    MAX_LAYERS,
    MAX_SPATIAL,
    MAX_WIDTH,
    Activation,
    Architecture,
    ArchitectureConfig,
    DenseStack,
    InputSpec,
    config_error,
    dense_parameter_count,
    make_activation,
)
from aiaas.ml.errors import ConfigErrorItem

Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


class ConvBlock(ArchitectureConfig):
    """Conv2d (stride 1) -> activation -> MaxPool2d(pool) when pool > 1."""

    channels: int = Field(..., ge=1, le=MAX_WIDTH, description="Output channels of the conv.")
    kernel: int = Field(..., ge=1, le=MAX_SPATIAL, description="Square conv kernel size.")
    padding: int | None = Field(
        None,
        ge=0,
        le=MAX_SPATIAL,
        description="Zero padding on each side; defaults to kernel // 2 (size-preserving "
        "for odd kernels). Must be smaller than the kernel.",
    )
    pool: int = Field(
        2, ge=1, le=MAX_SPATIAL, description="Max-pool window and stride; 1 means no pooling."
    )

    def resolved_padding(self) -> int:
        return self.kernel // 2 if self.padding is None else self.padding


class CNNConfig(ArchitectureConfig):
    """Conv blocks on ``[in_channels, height, width]`` images, then a dense head."""

    in_channels: int = Field(..., ge=1, le=MAX_WIDTH, description="Channels of the input image.")
    height: int = Field(..., ge=1, le=MAX_SPATIAL, description="Input image height in pixels.")
    width: int = Field(..., ge=1, le=MAX_SPATIAL, description="Input image width in pixels.")
    blocks: list[ConvBlock] = Field(
        ...,
        min_length=1,
        max_length=MAX_BLOCKS,
        description="Convolution blocks, applied in order.",
    )
    hidden: list[Width] = Field(
        default_factory=list,
        max_length=MAX_LAYERS,
        description="Widths of the dense head's hidden layers after flattening.",
    )
    output_dim: int = Field(
        ..., ge=1, le=MAX_WIDTH, description="Number of outputs (classes or regression values)."
    )
    activation: Activation = Field(
        "relu", description="Activation after each conv and each hidden dense layer."
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout probability on the flattened features and after each hidden layer.",
    )


def _spatial_sizes(config: CNNConfig) -> tuple[list[ConfigErrorItem], tuple[int, int]]:
    """Walk the blocks; return the first problem found, or the final feature map size."""
    h, w = config.height, config.width
    for i, block in enumerate(config.blocks):
        pad = block.resolved_padding()
        where = f"block {i + 1}"
        if pad >= block.kernel:
            # Padding of a full kernel or more only adds outputs that see nothing but zeros,
            # and it lets the feature map (and memory use) grow block after block.
            msg = f"{where}: padding {pad} must be smaller than kernel {block.kernel}"
            return [config_error(["blocks", i, "padding"], msg, "padding_too_large")], (h, w)
        conv_h, conv_w = h + 2 * pad - block.kernel + 1, w + 2 * pad - block.kernel + 1
        if conv_h < 1 or conv_w < 1:
            padded = f" with padding {pad}" if pad else ""
            msg = (
                f"{where}: kernel {block.kernel}{padded} on a {h}x{w} input leaves "
                f"{max(conv_h, 0)}x{max(conv_w, 0)}"
            )
            return [config_error(["blocks", i, "kernel"], msg, "conv_output_empty")], (h, w)
        pool_h, pool_w = conv_h // block.pool, conv_w // block.pool
        if pool_h < 1 or pool_w < 1:
            msg = (
                f"{where}: pool {block.pool} on the {conv_h}x{conv_w} conv output leaves "
                f"{pool_h}x{pool_w}"
            )
            # The API names the block's kernel for every empty output, pooling included, so
            # clients find the failing block at one stable location.
            return [config_error(["blocks", i, "kernel"], msg, "pool_output_empty")], (h, w)
        h, w = pool_h, pool_w
    return [], (h, w)


def _flat_features(config: CNNConfig) -> int:
    problems, (h, w) = _spatial_sizes(config)
    if problems:
        raise ValueError(problems[0]["msg"])
    return config.blocks[-1].channels * h * w


class ConvNet(nn.Module):
    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        in_channels = [config.in_channels, *(b.channels for b in config.blocks[:-1])]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, b.channels, b.kernel, padding=b.resolved_padding())
            for c_in, b in zip(in_channels, config.blocks, strict=True)
        )
        # Identity for pool == 1 keeps one pool entry per conv, so indices line up.
        self.pools = nn.ModuleList(
            nn.MaxPool2d(b.pool) if b.pool > 1 else nn.Identity() for b in config.blocks
        )
        self.act = make_activation(config.activation)
        self.drop = nn.Dropout(config.dropout)
        self.head = DenseStack(
            [_flat_features(config), *config.hidden, config.output_dim],
            config.activation,
            config.dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv, pool in zip(self.convs, self.pools, strict=True):
            x = pool(self.act(conv(x)))
        out: Tensor = self.head(self.drop(x.flatten(1)))
        return out


class CNNArchitecture(Architecture[CNNConfig]):
    name = "cnn"
    description = (
        "Convolutional network for images of shape [in_channels, height, width]: "
        "conv -> activation -> max-pool blocks, then a dense head."
    )
    config_model = CNNConfig
    _example_config = {
        "in_channels": 1,
        "height": 8,
        "width": 8,
        "blocks": [{"channels": 8, "kernel": 3}, {"channels": 16, "kernel": 3}],
        "hidden": [32],
        "output_dim": 10,
    }

    def check(self, config: CNNConfig) -> list[ConfigErrorItem]:
        problems, _ = _spatial_sizes(config)
        return problems

    def build(self, config: CNNConfig) -> nn.Module:
        return ConvNet(config)

    def input_spec(self, config: CNNConfig) -> InputSpec:
        return InputSpec(shape=(config.in_channels, config.height, config.width))

    def activation_count(self, config: CNNConfig, *, seq_len: int) -> int:
        h, w = config.height, config.width
        total = config.in_channels * h * w
        for block in config.blocks:
            pad = block.resolved_padding()
            conv_h, conv_w = h + 2 * pad - block.kernel + 1, w + 2 * pad - block.kernel + 1
            h, w = max(conv_h // block.pool, 1), max(conv_w // block.pool, 1)
            # The conv's output, its activation's, and the pooled map.
            total += block.channels * (2 * max(conv_h, 1) * max(conv_w, 1) + h * w)
        return total + sum([_flat_features(config), *config.hidden, config.output_dim])

    def parameter_count(self, config: CNNConfig) -> int:
        total = 0
        c_in = config.in_channels
        for block in config.blocks:
            total += c_in * block.channels * block.kernel * block.kernel + block.channels
            c_in = block.channels
        return total + dense_parameter_count(
            [_flat_features(config), *config.hidden, config.output_dim]
        )
