"""``aiaas predict``: run a model now, on inputs given as JSON or in a .npy or .json file."""

from __future__ import annotations

import itertools
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from aiaas.cli import output
from aiaas.cli.arguments import ModelName, json_value, version_ref
from aiaas.cli.remote import PANEL, Remote, command
from aiaas.client import PredictResult

app = typer.Typer()


# On predict, --json is the inputs (the spelling), so the JSON switch is another flag.
@command(app, "predict", output_flag="--json-output", rich_help_panel=PANEL)
def predict(
    remote: Remote,
    name: ModelName,
    version: Annotated[
        str | None,
        typer.Option(
            "--version", help="A number or an alias (default: production if set, else the latest)."
        ),
    ] = None,
    inputs_json: Annotated[
        str | None,
        typer.Option(
            "--json",
            help='The inputs as JSON: one example, a list of them, or {"inputs": ...}.',
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The inputs in a .npy file (batch first, sent as is) or a .json file.",
        ),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", dir_okay=False, help="Write the outputs array to this .npy file."
        ),
    ] = None,
) -> None:
    """Run MODEL on inputs and print its predictions (one row per example)."""
    inputs = read_inputs(inputs_json, file)
    result = remote.client().models.predict(name, inputs, version_ref(version))
    if save is not None:
        write_npy(save, result.outputs)
    remote.show(result, lambda: _print(result, save))


def read_inputs(text: str | None, file: Path | None) -> Any:
    """A numpy array from a .npy file (never unpickled), else the JSON's inputs."""
    if (text is None) == (file is None):
        raise typer.BadParameter("give exactly one of them", param_hint="'--json' / '--file'")
    if text is not None:
        return _inputs(json_value(text, "--json"), "--json")
    assert file is not None
    if file.suffix.lower() == ".npy":
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"not a .npy array: {exc}", param_hint="'--file'") from exc
        if not isinstance(array, np.ndarray):  # an .npz archive under a .npy name
            raise typer.BadParameter("not a .npy array", param_hint="'--file'")
        return array
    if file.suffix.lower() == ".json":
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(str(exc), param_hint="'--file'") from exc
        return _inputs(json_value(text, "--file"), "--file")
    raise typer.BadParameter("must be a .npy or a .json file", param_hint="'--file'")


def write_npy(path: Path, array: np.ndarray) -> None:
    # Through a file object: np.save would add .npy to a name that lacks it.
    try:
        with path.open("wb") as file:
            np.save(file, array, allow_pickle=False)
    except OSError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--output'") from exc


def _inputs(value: Any, option: str) -> Any:
    if isinstance(value, dict):
        if "inputs" not in value:
            raise typer.BadParameter(
                'a JSON object needs an "inputs" key', param_hint=f"'{option}'"
            )
        return value["inputs"]
    return value


# One row per example: its index, its prediction and its outputs, rounded for reading.
ROWS: tuple[output.Column, ...] = (
    ("#", itemgetter(0)),
    ("prediction", itemgetter(1)),
    ("outputs", lambda row: np.round(row[2], 4).tolist()),
)


def _print(result: PredictResult, saved: Path | None) -> None:
    rows = zip(itertools.count(), result.predictions, result.outputs, strict=False)
    output.table(ROWS, rows, title=f"{result.model} version {result.version}")
    if saved is not None:
        output.line(f"outputs written to {saved}")
