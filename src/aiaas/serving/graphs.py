"""Forward graphs: a model's forward traced, frozen and prepacked into TorchScript, checked
against the eager module, and calibrated against each other on this machine's batch sizes."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Final

import torch
from torch import nn

from aiaas.serving.mode import serving_mode
from aiaas.serving.spec import ServingSpec

log = logging.getLogger(__name__)

# Length given to variable axes (sequence length) of the examples traced, checked and timed,
# and of the runtime's warm-up input: the graphs see the lengths a warm runtime has seen.
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


def entry(forward: Forward) -> Forward:
    """A scripted module's compiled ``forward`` itself, called without ``nn.Module.__call__``
    (its hook checks are Python, on every call; a graph has no hooks)."""
    if isinstance(forward, torch.jit.ScriptModule):
        method: Forward = forward.forward
        return method
    return forward


def sample_shape(spec: ServingSpec, length: int) -> tuple[int, ...]:
    """One example's shape, with ``length`` for the variable axes."""
    return tuple(length if dim is None else dim for dim in spec.input_shape)


def _example(spec: ServingSpec, *, rows: int, length: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(rows)
    return torch.rand((rows, *sample_shape(spec, length)), generator=generator).to(device)


_DROPOUTS: Final = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def strip_dropout(module: nn.Module) -> None:
    """Replace dropout layers with identities, before tracing or serving eagerly. In eval mode
    they return their input anyway, but each is still a torch op per forward, and every op
    hands the GIL to the event loop and has to win it back (docs/performance.md)."""
    for name, child in module.named_children():
        if isinstance(child, _DROPOUTS):
            setattr(module, name, nn.Identity())
        else:
            strip_dropout(child)
