"""A loaded model version ready to run forward passes: build, load weights, predict."""

from __future__ import annotations

import sys
import threading
from typing import Any, Final

import numpy as np
import torch
from torch import nn

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import load_safetensors, load_weights_into
from aiaas.serving.spec import ServingSpec

# Length given to variable axes (sequence length) of the warm-up input.
WARMUP_LENGTH: Final = 8

# Per thread: the page-locked staging buffer of copies to the GPU (see ModelRuntime._staged).
_pinned = threading.local()


class ModelRuntime:
    """One model in eval mode on one device; ``predict`` may be called from many threads."""

    def __init__(self, spec: ServingSpec, module: nn.Module, device: torch.device) -> None:
        self._spec = spec
        self._module = module
        self._device = device
        self._nbytes = sum(
            t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())
        )

    @classmethod
    def load(
        cls, spec: ServingSpec, weights: bytes, *, device: torch.device, warmup: bool = True
    ) -> ModelRuntime:
        """Build ``spec``'s model from safetensors ``weights``.

        Raises the ``aiaas.ml`` errors (``ConfigInvalid``, ``NotSafetensors``,
        ``WeightsMismatch``) for a version that cannot be served.
        """
        # The gateway enforced the parameter limit at registration; a limit changed since
        # then must not make already registered versions unservable.
        config = parse_config(spec.architecture, spec.config, max_parameters=sys.maxsize)
        output_dim = getattr(config, "output_dim", None)
        if spec.labels is not None and output_dim is not None and len(spec.labels) != output_dim:
            raise ValueError(f"{len(spec.labels)} labels for a model with {output_dim} outputs")
        module = build_model(spec.architecture, config)
        load_weights_into(module, load_safetensors(weights))
        module.eval()
        _strip_dropout(module)
        # Freezing parameters keeps autograd bookkeeping off even outside inference_mode.
        module.requires_grad_(False)
        runtime = cls(spec, module.to(device), device)
        if warmup:
            runtime.warmup()
        return runtime

    @property
    def spec(self) -> ServingSpec:
        return self._spec

    @property
    def module(self) -> nn.Module:
        return self._module

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def nbytes(self) -> int:
        """Bytes held by parameters and buffers, for the runtime cache's budget."""
        return self._nbytes

    def warmup(self) -> None:
        """One forward on zeros, so the first real request does not pay for lazy init
        (oneDNN primitive creation, CUDA kernel loading and allocator growth)."""
        shape = tuple(WARMUP_LENGTH if dim is None else dim for dim in self._spec.input_shape)
        self.predict(np.zeros((1, *shape), dtype=np.float32))

    def check_input(self, batch: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``batch`` is ``[n >= 1, *input_shape]``."""
        expected = self._spec.input_shape
        if batch.ndim != len(expected) + 1 or batch.shape[0] < 1:
            raise ValueError(
                f"expected a batch of shape [n, {', '.join(map(_dim, expected))}], "
                f"got {list(batch.shape)}"
            )
        for axis, (got, want) in enumerate(zip(batch.shape[1:], expected, strict=True), 1):
            if want is not None and got != want:
                raise ValueError(f"axis {axis} of the batch has size {got}, expected {want}")
            if got < 1:
                raise ValueError(f"axis {axis} of the batch is empty")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Forward a batch-first array; probabilities for classification, raw outputs
        for regression, as a float32 array on the CPU."""
        self.check_input(batch)
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if not array.flags.writeable:
            # torch.from_numpy warns on read-only memory (np.frombuffer of a request body);
            # copying is cheaper than a thread-unsafe warnings filter around it.
            array = array.copy()
        with torch.inference_mode():
            on_gpu = self._device.type == "cuda"
            inputs = self._staged(array) if on_gpu else torch.from_numpy(array)
            outputs = self._module(inputs)
            if self._spec.task == "classification":
                outputs = outputs.softmax(-1)
            if outputs.device.type != "cpu" or outputs.dtype != torch.float32:
                outputs = outputs.to(device="cpu", dtype=torch.float32)
            result: np.ndarray = outputs.numpy()
        return result

    def postprocess(self, outputs: np.ndarray) -> list[Any]:
        return postprocess(self._spec, outputs)

    def _staged(self, array: np.ndarray) -> torch.Tensor:
        """Copy ``array`` to the GPU through page-locked memory of this thread's own.

        A copy from pageable memory goes through the driver's small staging buffer at a
        fraction of the bus's speed; one from pinned memory runs at full speed and without
        blocking. The buffer is reused: the outputs' copy back (synchronous) ends every call
        after this copy has finished, so the next call may overwrite it.
        """
        staging: torch.Tensor | None = getattr(_pinned, "buffer", None)
        if staging is None or staging.numel() < array.size:
            staging = torch.empty(max(array.size, 1 << 16), dtype=torch.float32).pin_memory()
            _pinned.buffer = staging
        view = staging[: array.size].view(array.shape)
        view.numpy()[...] = array
        return view.to(self._device, non_blocking=True)


def postprocess(spec: ServingSpec, outputs: np.ndarray) -> list[Any]:
    """Per row of ``predict``'s outputs: for classification the most probable class, by
    label name when the spec has labels and by index otherwise; for regression the
    output values."""
    if spec.task == "regression":
        values: list[Any] = outputs.tolist()
        return values
    indices: list[int] = outputs.argmax(axis=-1).tolist()
    if spec.labels is None:
        return list(indices)
    labels = spec.labels
    return [labels[i] for i in indices]


_DROPOUTS: Final = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def _strip_dropout(module: nn.Module) -> None:
    """Replace dropout layers with identities. In eval mode they return their input anyway,
    but each is still a torch op per forward, and every op hands the GIL to the event loop
    and has to win it back (docs/performance.md)."""
    for name, child in module.named_children():
        if isinstance(child, _DROPOUTS):
            setattr(module, name, nn.Identity())
        else:
            _strip_dropout(child)


def _dim(size: int | None) -> str:
    return "*" if size is None else str(size)
