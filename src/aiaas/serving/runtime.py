"""A loaded model version ready to run forward passes: build, load weights, predict."""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.jit import optimized_execution  # type: ignore[attr-defined]  # public, not in __all__

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.explain import ExplainOptions, Explanation, explain
from aiaas.ml.weights import load_safetensors, load_weights_into
from aiaas.serving.graphs import (
    WARMUP_LENGTH,
    Forward,
    calibrate,
    entry,
    prepack_forward,
    sample_shape,
    strip_dropout,
    trace_forward,
)
from aiaas.serving.mode import in_serving_mode, serving_mode
from aiaas.serving.postprocess import postprocess
from aiaas.serving.spec import ServingSpec

# Per thread: the page-locked staging buffer of copies to the GPU (see ModelRuntime._staged).
_pinned = threading.local()


class ModelRuntime:
    """One model in eval mode on one device; ``predict`` may be called from many threads."""

    def __init__(
        self,
        spec: ServingSpec,
        module: nn.Module,
        device: torch.device,
        *,
        forward: Forward | None = None,
        batched: Forward | None = None,
        batched_from: int | None = None,
    ) -> None:
        if (batched is None) != (batched_from is None):
            raise ValueError("give batched and batched_from together")
        self._spec = spec
        self._module = module
        self._device = device
        self._forward: Forward = entry(forward) if forward is not None else module
        # From ``batched_from`` rows on, forwards run through ``batched`` instead.
        self._batched: Forward = entry(batched) if batched is not None else self._forward
        self._batched_from = batched_from if batched_from is not None else sys.maxsize
        self._softmax = spec.task == "classification"
        self._on_gpu = device.type == "cuda"
        weights = sum(
            t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers())
        )
        # A prepacked graph holds its own copy of the weights in oneDNN's layouts: counted as
        # a second copy of all of them, an upper bound for the cache's budget.
        self._nbytes = 2 * weights if batched is not None else weights

    @classmethod
    def load(
        cls,
        spec: ServingSpec,
        weights: bytes,
        *,
        device: torch.device,
        warmup: bool = True,
        trace: bool = True,
    ) -> ModelRuntime:
        """Build ``spec``'s model from safetensors ``weights``.

        With ``trace``, forward passes on the CPU run as one traced graph where the trace
        checks out against the eager module (see ``trace_forward``), and eagerly otherwise.

        Raises the ``aiaas.ml`` errors (``ConfigInvalid``, ``NotSafetensors``,
        ``WeightsMismatch``) for a version that cannot be served.
        """
        # A forward thread loads the models it is asked for, in serving_mode; a load runs in
        # torch's defaults instead. Tracing needs ordinary tensors, and a graph frozen with
        # the optimising executor off ran 1.5x slower (a small CNN, 110 us against 70).
        with torch.inference_mode(False), optimized_execution(True):
            return cls._build(spec, weights, device=device, warmup=warmup, trace=trace)

    @classmethod
    def _build(
        cls, spec: ServingSpec, weights: bytes, *, device: torch.device, warmup: bool, trace: bool
    ) -> ModelRuntime:
        # The gateway enforced the parameter limit at registration; a limit changed since
        # then must not make already registered versions unservable.
        config = parse_config(
            spec.architecture, spec.config, max_parameters=sys.maxsize, compute_limits=False
        )
        output_dim = getattr(config, "output_dim", None)
        if spec.labels is not None and output_dim is not None and len(spec.labels) != output_dim:
            raise ValueError(f"{len(spec.labels)} labels for a model with {output_dim} outputs")
        module = build_model(spec.architecture, config)
        load_weights_into(module, load_safetensors(weights))
        module.eval()
        strip_dropout(module)
        # Freezing parameters keeps autograd bookkeeping off even outside inference_mode.
        module.requires_grad_(False)
        module = module.to(device)
        # CPUs only: that is where the per-op GIL round trips cost (docs/performance.md); on
        # CUDA the eager path is the one measured against raw torch.
        forward, batched, batched_from = None, None, None
        if trace and device.type == "cpu":
            # The graphs take the softmax in: one op less to dispatch from Python per call.
            served = (
                nn.Sequential(module, nn.Softmax(-1)) if spec.task == "classification" else module
            )
            forward = trace_forward(spec, served, device)
            prepacked = prepack_forward(spec, served) if forward is not None else None
            if forward is not None and prepacked is not None:
                batched_from = calibrate(spec, forward, prepacked)
                batched = prepacked if batched_from is not None else None
        runtime = cls(
            spec, module, device, forward=forward, batched=batched, batched_from=batched_from
        )
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
    def traced(self) -> bool:
        """Whether forward passes run as a traced graph rather than the eager module."""
        return self._forward is not self._module

    @property
    def batched_from(self) -> int | None:
        """The batch size from which forwards run through the prepacked graph, if any
        (1: all of them)."""
        return self._batched_from if self._batched_from != sys.maxsize else None

    @property
    def nbytes(self) -> int:
        """Bytes held by parameters and buffers (twice, with a prepacked graph), for the
        runtime cache's budget."""
        return self._nbytes

    def warmup(self) -> None:
        """One forward on zeros, so the first real request does not pay for lazy init
        (oneDNN primitive creation, CUDA kernel loading and allocator growth)."""
        shape = sample_shape(self._spec, WARMUP_LENGTH)
        self.predict(np.zeros((1, *shape), dtype=np.float32))
        if 1 < self._batched_from < sys.maxsize:
            self.predict(np.zeros((self._batched_from, *shape), dtype=np.float32))

    def check_input(self, batch: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``batch`` is ``[n >= 1, *input_shape]``."""
        expected = self._spec.input_shape
        shape = batch.shape
        if shape[1:] == expected and shape[0] >= 1:
            return  # the common case, in one comparison (fixed shapes have no zero sizes)
        if batch.ndim != len(expected) + 1 or shape[0] < 1:
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
        if in_serving_mode():
            return self._run(array)
        with serving_mode():
            return self._run(array)

    def _run(self, array: np.ndarray) -> np.ndarray:
        on_gpu = self._on_gpu
        inputs = self._staged(array) if on_gpu else torch.from_numpy(array)
        forward = self._forward if len(array) < self._batched_from else self._batched
        if forward is self._module:
            outputs = self._module(inputs)
            if self._softmax:
                outputs = outputs.softmax(-1)
        else:
            # Graphs end with the softmax already (see ``load``).
            outputs = forward(inputs)
        # dtype objects are singletons; comparing them, unlike reading .device, is free.
        if on_gpu or outputs.dtype is not torch.float32:
            outputs = outputs.to(device="cpu", dtype=torch.float32)
        result: np.ndarray = outputs.numpy()
        return result

    def explain(self, batch: np.ndarray, options: ExplainOptions) -> Explanation:
        """Attributions for a batch-first array (``aiaas.ml.explain``), in one call.

        On the eager module, never the traced graphs: those run in inference mode and keep
        nothing to differentiate."""
        self.check_input(batch)
        # A writable float32 copy: autograd may not share a read-only message buffer.
        inputs = torch.from_numpy(np.array(batch, dtype=np.float32)).to(self._device)
        return explain(self._module, inputs, options, softmax=self._softmax)

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


def _dim(size: int | None) -> str:
    return "*" if size is None else str(size)
