"""``aiaas usage``: what your account used: predictions per model, trainings, stored bytes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from aiaas.cli import output
from aiaas.cli.remote import PANEL, Remote, command
from aiaas.client import Usage

app = typer.Typer()


class Granularity(StrEnum):
    day = "day"
    hour = "hour"


@command(app, "usage", rich_help_panel=PANEL)
def usage(
    remote: Remote,
    start: Annotated[
        datetime | None, typer.Option("--from", help="Start (default: 30 days before --to).")
    ] = None,
    end: Annotated[datetime | None, typer.Option("--to", help="End (default: now).")] = None,
    granularity: Annotated[
        Granularity, typer.Option("--granularity", help="Bucket size of the --json output.")
    ] = Granularity.day,
) -> None:
    """Your usage: predictions per model, trainings, stored bytes.

    Dates are UTC unless they carry an offset."""
    report = remote.client().usage.get(start=start, end=end, granularity=granularity.value)
    remote.show(report, lambda: _print(report))


MODELS: tuple[output.Column, ...] = (
    "model",
    ("predictions", lambda usage: usage.totals.predictions),
    ("rows", lambda usage: usage.totals.rows),
    ("compute s", lambda usage: round(usage.totals.compute_s, 3)),
    ("errors", lambda usage: usage.totals.errors),
)


def _print(report: Usage) -> None:
    period = f"{output.cell(report.start)} to {output.cell(report.to)} (UTC)"
    output.table(MODELS, report.models, title=f"usage {period}")
    trainings = report.trainings
    output.fields(
        [
            ("trainings", trainings.get("count", 0)),
            ("training compute s", round(float(trainings.get("compute_s", 0.0)), 3)),
            *((f"stored {kind}", output.size(n)) for kind, n in report.stored_bytes.items()),
        ]
    )
