"""Serving mode: the torch state every forward pass runs in, graphs and runtimes alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.jit import optimized_execution  # type: ignore[attr-defined]  # public, not in __all__


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
