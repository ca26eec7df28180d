"""A small line chart drawn with characters, for the loss curve at the end of a training:
no plotting library, and it reads the same in a terminal, a CI log or a pasted issue."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

# One mark per series, in order; where two series fall on the same cell, OVERLAP.
MARKS = "●○"
OVERLAP = "◉"


def render(
    series: Sequence[tuple[str, Sequence[float | None]]], *, width: int = 48, height: int = 8
) -> list[str]:
    """Up to two series of values, one per epoch (None where an epoch has none), on shared
    axes: the highest and lowest value label the top and bottom rows, epochs run across and
    values between epochs are interpolated. No lines when there is nothing to draw."""
    series = series[: len(MARKS)]
    values = [v for _, points in series for v in points if _finite(v)]
    epochs = max((len(points) for _, points in series), default=0)
    if not values or epochs == 0:
        return []
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    columns = width if epochs > 1 else 1
    grid = [[" "] * columns for _ in range(height)]
    for mark, (_, points) in zip(MARKS, series, strict=False):
        for column in range(columns):
            value = _at(points, column * (epochs - 1) / max(columns - 1, 1))
            if value is None:
                continue
            row = grid[height - 1 - round((value - low) / span * (height - 1))]
            row[column] = mark if row[column] in (" ", mark) else OVERLAP

    top, bottom = f"{high:.4g}", f"{low:.4g}"
    pad = max(len(top), len(bottom))
    lines = []
    for index, row in enumerate(grid):
        label = top if index == 0 else bottom if index == height - 1 else ""
        tick = "┤" if label else "│"
        lines.append(f"{label:>{pad}} {tick}{''.join(row)}".rstrip())
    lines.append(f"{'':>{pad}} └{'─' * columns}")
    axis = f"epoch 1{epochs:>{columns - 7}}" if columns > 8 else f"epoch {epochs}"
    lines.append(f"{'':>{pad}}  {axis}")
    legend = "   ".join(f"{mark} {name}" for mark, (name, _) in zip(MARKS, series, strict=False))
    lines.append(f"{'':>{pad}}  {legend}")
    return lines


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _at(points: Sequence[float | None], position: float) -> float | None:
    """The value at a fractional epoch index, linear between the two epochs around it."""
    before, after = math.floor(position), math.ceil(position)
    if after >= len(points):
        return None
    low, high = points[before], points[after]
    if _finite(low) and _finite(high):
        return low + (high - low) * (position - before)
    return None  # a gap: no line drawn towards an epoch without a value
