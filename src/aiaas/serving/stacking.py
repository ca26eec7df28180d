"""Several requests' rows as one batch: concatenated for one forward, its outputs split back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import numpy as np


def run_split(
    run_batch: Callable[[np.ndarray], np.ndarray], parts: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Concatenate ``parts``, run them as one batch, split the output rows back.

    Runs on the executor thread, keeping the copies off the event loop.
    """
    batch = _join(parts)
    return split_outputs(parts, batch, run_batch(batch))


async def run_split_async(
    run_batch: Callable[[np.ndarray], Awaitable[np.ndarray]], parts: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """``run_split`` for a coroutine ``run_batch``."""
    batch = _join(parts)
    return split_outputs(parts, batch, await run_batch(batch))


def _join(parts: Sequence[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def split_outputs(
    parts: Sequence[np.ndarray], batch: np.ndarray, outputs: object
) -> list[np.ndarray]:
    """``outputs`` of the joined ``batch`` cut back into one piece per part, after checking
    that it has a row per input row."""
    if not isinstance(outputs, np.ndarray) or outputs.ndim < 1 or len(outputs) != len(batch):
        got = getattr(outputs, "shape", type(outputs).__name__)
        raise RuntimeError(f"run_batch returned {got} for a batch of {len(batch)} rows")
    if len(parts) == 1:
        return [outputs]
    # Slices rather than np.split, whose Python-level bookkeeping costs more than the views.
    pieces, start = [], 0
    for part in parts:
        end = start + len(part)
        pieces.append(outputs[start:end])
        start = end
    return pieces
