"""A loaded model version ready to run forward passes: build, load weights, predict."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Final

import numpy as np
import torch
from torch import nn
from torch.jit import optimized_execution  # type: ignore[attr-defined]  # public, not in __all__

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import load_safetensors, load_weights_into
from aiaas.serving.postprocess import postprocess
from aiaas.serving.spec import ServingSpec

log = logging.getLogger(__name__)

# Length given to variable axes (sequence length) of the warm-up input.
WARMUP_LENGTH: Final = 8
# A traced forward is used only where it reproduces the eager one this closely.
TRACE_TOLERANCE: Final = 1e-5
# oneDNN's blocked kernels sum in another order: as close as the CUDA path is held to.
PREPACK_TOLERANCE: Final = 1e-4
# The prepacked graph takes over from the batch size where it ran at most this fraction
# of the traced graph's time, and at every larger size measured: a margin over timing noise.
PREPACK_GAIN: Final = 0.9
# Calibration doubles the batch up to the version's max_batch_size, and stops early once
# one forward takes longer than this (big models gain nothing from a finer threshold).
CALIBRATION_CALL_S: Final = 0.05
CALIBRATION_ROUNDS: Final = 5

Forward = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def serving_mode() -> Iterator[None]:
    """The torch state forward passes run in: inference mode, graphs interpreted as they are.

    ``predict`` enters it around each call unless its thread is in it already. A thread that
    runs nothing but predictions holds it for its whole life instead (see
    ``executor.ForwardThreads``): entering and leaving both modes costs 1-2 us in a tight
    loop, but about 40 us of the forward thread's CPU per request on a server whose caches
    the HTTP work has just evicted (docs/performance.md).

    The profiling executor (the default) would re-specialise a graph for each new batch size
    and compile fusion kernels on CUDA; plain interpretation is as fast here and never stalls
    a request.
    """
    with torch.inference_mode(), optimized_execution(False):
        yield


def in_serving_mode() -> bool:
    """Whether this thread is in ``serving_mode`` (two flag reads in C)."""
    return torch.is_inference_mode_enabled() and not torch._C._get_graph_executor_optimize()


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
        self._forward: Forward = _entry(forward) if forward is not None else module
        # From ``batched_from`` rows on, forwards run through ``batched`` instead.
        self._batched: Forward = _entry(batched) if batched is not None else self._forward
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
        _strip_dropout(module)
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
        shape = _sample_shape(self._spec, WARMUP_LENGTH)
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


def trace_forward(spec: ServingSpec, module: nn.Module, device: torch.device) -> Forward | None:
    """``module``'s forward traced into one TorchScript graph, or None where that cannot be
    trusted.

    An eager forward is a chain of Python calls, and every torch op in it gives up the GIL
    and must win it back from the event loop; the traced graph runs all its ops in C++
    after one release (a small CNN's forward took ~60 % of the eager time, measured in
    docs/performance.md). A trace records one run, so it is used only when tracing raised
    no warning (a warning means shape-dependent Python went into the graph) and the graph
    reproduces the eager outputs on inputs of another batch size and, for variable axes,
    another length than the one traced.
    """
    traced_on = _example(spec, rows=2, length=WARMUP_LENGTH, device=device)
    checked_on = _example(spec, rows=3, length=WARMUP_LENGTH + 3, device=device)
    try:
        with warnings.catch_warnings(record=True) as caught, torch.inference_mode(False):
            warnings.simplefilter("always")
            with torch.no_grad():
                traced = torch.jit.trace(module, traced_on, check_trace=False)  # type: ignore[no-untyped-call]
                # Frozen: parameters become constants of the graph, not attribute reads.
                graph = torch.jit.freeze(traced.eval())
        concerns = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
        if concerns:
            log.info("serving %s eagerly: tracing warned %s", spec.key, concerns[0].message)
            return None
        with serving_mode():
            for example in (traced_on, checked_on):
                expected, got = module(example), graph(example)
                if expected.shape != got.shape or not torch.allclose(
                    expected, got, rtol=TRACE_TOLERANCE, atol=TRACE_TOLERANCE
                ):
                    log.info("serving %s eagerly: the traced graph differs", spec.key)
                    return None
    except Exception as exc:  # tracing is an optimisation: any failure means eager
        log.info("serving %s eagerly: tracing failed: %s", spec.key, exc)
        return None
    forward: Forward = graph
    return forward


def prepack_forward(spec: ServingSpec, module: nn.Module) -> Forward | None:
    """``module`` traced, frozen and rewritten for inference on the CPU
    (``optimize_for_inference``: weights prepacked into oneDNN's blocked layouts,
    convolutions fused with what follows), or None where that fails or changes the outputs.
    For modules ``trace_forward`` found traceable.

    On a small CNN the plain convolutions cost about as much per row at any batch size,
    so batching gained nothing; prepacked, a batch of 16 ran 3x faster than the plain graph
    (docs/performance.md). A single row is usually slower prepacked: its inputs and outputs
    are converted to and from the blocked layout on every call. ``calibrate`` decides.
    """
    example = _example(spec, rows=2, length=WARMUP_LENGTH, device=torch.device("cpu"))
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            # A trace of its own: the passes rewrite the graph in place, and a copy of a
            # scripted module shares its graph.
            traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        with serving_mode():
            for rows in (2, 3):
                example = _example(
                    spec, rows=rows, length=WARMUP_LENGTH, device=torch.device("cpu")
                )
                expected, got = module(example), graph(example)
                if expected.shape != got.shape or not torch.allclose(
                    expected, got, rtol=PREPACK_TOLERANCE, atol=PREPACK_TOLERANCE
                ):
                    log.info("%s: the prepacked graph differs; not used", spec.key)
                    return None
    except Exception as exc:  # an optimisation: any failure means the traced graph alone
        log.info("%s: no prepacked graph: %s", spec.key, exc)
        return None
    forward: Forward = graph
    return forward


def calibrate(spec: ServingSpec, plain: Forward, prepacked: Forward) -> int | None:
    """The batch size from which ``prepacked`` is the faster forward on this machine, or
    None where it never is.

    Times both, interleaved, at 1, 2, 4, ... rows up to the version's ``max_batch_size``
    (the batches the batcher forms) and takes each one's best round. The threshold is the
    smallest size from which the prepacked graph won by ``PREPACK_GAIN`` at every larger
    size measured. Each size's rounds stop the doubling once one call takes
    ``CALIBRATION_CALL_S``, so a load spends at most a second or two here (the small CNN:
    about 0.1 s).
    """
    cpu = torch.device("cpu")
    sizes: list[int] = []
    wins: list[bool] = []
    rows = 1
    with serving_mode():
        while True:
            example = _example(spec, rows=rows, length=WARMUP_LENGTH, device=cpu)
            best = [float("inf"), float("inf")]
            for forward in (plain, prepacked):
                forward(example)  # first call at a size: oneDNN builds its primitives
            for _ in range(CALIBRATION_ROUNDS):
                for i, forward in enumerate((plain, prepacked)):
                    start = time.perf_counter()
                    forward(example)
                    best[i] = min(best[i], time.perf_counter() - start)
            sizes.append(rows)
            wins.append(best[1] <= PREPACK_GAIN * best[0])
            if rows >= spec.max_batch_size or max(best) > CALIBRATION_CALL_S:
                break
            rows = min(rows * 2, spec.max_batch_size)
    threshold = None
    for size, won in zip(reversed(sizes), reversed(wins), strict=True):
        if not won:
            break
        threshold = size
    log.info("%s: prepacked graph from %s rows (measured at %s)", spec.key, threshold, sizes)
    return threshold


def _entry(forward: Forward) -> Forward:
    """A scripted module's compiled ``forward`` itself, called without ``nn.Module.__call__``
    (its hook checks are Python, on every call; a graph has no hooks)."""
    if isinstance(forward, torch.jit.ScriptModule):
        method: Forward = forward.forward
        return method
    return forward


def _sample_shape(spec: ServingSpec, length: int) -> tuple[int, ...]:
    """One example's shape, with ``length`` for the variable axes."""
    return tuple(length if dim is None else dim for dim in spec.input_shape)


def _example(spec: ServingSpec, *, rows: int, length: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(rows)
    return torch.rand((rows, *_sample_shape(spec, length)), generator=generator).to(device)


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
