"""Datasets from a shell: the built-ins, your uploads (CSV or NPZ) and feedback sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiaas.cli import output
from aiaas.cli.arguments import Task, json_value
from aiaas.cli.remote import PANEL, Remote, command

app = typer.Typer()
datasets_app = typer.Typer(
    help="Datasets to train on: built-ins, uploads, feedback.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets", rich_help_panel=PANEL)

DATASETS: tuple[output.Column, ...] = (
    "id",
    "name",
    "task",
    "source",
    "rows",
    ("input shape", lambda dataset: "x".join(map(str, dataset.input_shape))),
    "classes",
)


@command(datasets_app, "list")
def list_datasets(remote: Remote) -> None:
    """The datasets you may train on."""
    remote.table(DATASETS, remote.client().datasets.list())


@command(datasets_app, "upload")
def upload(
    remote: Remote,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="A .csv (a header row, numeric features, a label column) or an .npz (x, y).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A name to know it by.")],
    task: Task,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column", help="The CSV's label column (default: the one named label)."
        ),
    ] = None,
    input_shape: Annotated[
        str | None,
        typer.Option("--input-shape", help="Each example's shape as JSON, e.g. [1, 8, 8]."),
    ] = None,
) -> None:
    """Upload a dataset; it is checked whole before anything is stored."""
    shape = None if input_shape is None else json_value(input_shape, "--input-shape")
    if shape is not None and not (
        isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape)
    ):
        raise typer.BadParameter(
            "must be a JSON list of positive integers", param_hint="'--input-shape'"
        )
    dataset = remote.client().datasets.upload(
        file, name=name, task=task, label_column=label_column, input_shape=shape
    )
    remote.show(dataset, f"uploaded {dataset.id}: {dataset.rows} rows of {dataset.task}")


@command(datasets_app, "rm")
def remove(
    remote: Remote,
    dataset_id: Annotated[str, typer.Argument(metavar="ID", help="The dataset's id.")],
) -> None:
    """Delete an uploaded dataset."""
    remote.client().datasets.delete(dataset_id)
    remote.show({"deleted": dataset_id}, f"deleted {dataset_id}")
