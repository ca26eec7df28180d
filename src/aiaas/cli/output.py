"""What the client commands print: JSON for scripts (the SDK's dataclasses as they are,
timestamps in ISO 8601, arrays as lists), tables and short lines for people.

Nothing a server sends is read as rich markup: a model named ``[red]x`` prints as written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console, RenderableType
from rich.table import Table

# A pipe has no width: there tables take their natural width rather than rich's 80 columns,
# so that `grep` and `less -S` see whole rows, not cells folded over several lines.
PIPE_WIDTH = 1000
# The figures a version is known by in a list, of those a classifier or a regressor has.
HEADLINE = ("accuracy", "f1", "rmse", "r2")


@functools.cache
def console() -> Console:
    """Standard output, built on first use (so the terminal and COLUMNS are read then)."""
    stdout = Console(markup=False, highlight=False, emoji=False)
    if not stdout.is_terminal and "COLUMNS" not in os.environ:
        stdout.width = PIPE_WIDTH
    return stdout


def plain(value: Any) -> Any:
    """``value`` with dataclasses, timestamps, numpy values and paths made JSON's own types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(plain(value), indent=2, ensure_ascii=False))


def line(text: str) -> None:
    console().out(text, highlight=False)


Column = str | tuple[str, str | Callable[[Any], Any]]
"""A column of items: an attribute's name (its header too), or a header and the attribute's
name or a function of the item."""


def table(columns: Sequence[Column], items: Iterable[Any], *, title: str = "") -> None:
    """One row per item."""
    if title:
        line(title)
    grid = Table(header_style="bold")
    for column in columns:
        # Folded rather than cut short: an id or a name with an ellipsis is of no use.
        grid.add_column(_header(column), overflow="fold")
    for item in items:
        grid.add_row(*(cell(_read(item, column)) for column in columns))
    _print(grid)


def record(columns: Sequence[Column], item: Any) -> None:
    """One item as two columns, field and value."""
    fields((_header(column), _read(item, column)) for column in columns)


def fields(pairs: Iterable[tuple[str, Any]]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in pairs:
        grid.add_row(name, cell(value))
    _print(grid)


def _header(column: Column) -> str:
    return column if isinstance(column, str) else column[0]


def _read(item: Any, column: Column) -> Any:
    read = column if isinstance(column, str) else column[1]
    return getattr(item, read) if isinstance(read, str) else read(item)


def _print(renderable: RenderableType) -> None:
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    # Piped: without the padding rich adds to the end of each line.
    with out.capture() as captured:
        out.print(renderable)
    for text in captured.get().splitlines():
        line(text.rstrip())


def cell(value: Any) -> str:
    """A value as people read it in a table: empty for none, short timestamps, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    value = count / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def headline(metrics: Mapping[str, Any] | None) -> str:
    """The figures a version is compared by, e.g. "accuracy 0.9333  f1 0.9327"."""
    found = dict(scalars(metrics))
    return "  ".join(f"{name} {found[name]:.4g}" for name in HEADLINE if name in found)


def scalars(metrics: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """The single-number figures of a metrics document (accuracy, f1, rmse...), leaving out
    the history, the per-class tables and the confusion matrix."""
    return [
        (name, value)
        for name, value in (metrics or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
