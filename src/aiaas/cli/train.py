"""``aiaas train``: start a training and, with --follow, watch it: a live progress bar (epoch,
train and validation loss, ETA) fed by the SDK's events iterator, then the loss curve, the
new version's test-split metrics and its number.

Where the output is not a terminal (a pipe, a CI log), each epoch is one line instead of a
redrawn bar, so the log keeps the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn

from aiaas.cli import curve, output
from aiaas.cli.arguments import ModelName, json_object, version_ref
from aiaas.cli.remote import PANEL, Remote, command
from aiaas.client import Training, TrainingEvent

app = typer.Typer()

HYPERPARAMETERS = "Hyperparameters (the server picks what is left out)"


@command(app, "train", rich_help_panel=PANEL)
def train(
    remote: Remote,
    name: ModelName,
    dataset: Annotated[
        list[str],
        typer.Option("--dataset", help="A dataset id, e.g. builtin:iris; repeat to pool several."),
    ],
    architecture: Annotated[
        str | None, typer.Option("--architecture", help="Train from scratch: mlp, cnn, rnn...")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="The architecture's config as JSON (default: fit the data)."),
    ] = None,
    base_version: Annotated[
        str | None, typer.Option("--base-version", help="Fine-tune this version (or alias).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    batch_size: Annotated[int | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    learning_rate: Annotated[float | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="adam, adamw or sgd.", rich_help_panel=HYPERPARAMETERS)
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    val_fraction: Annotated[float | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    test_fraction: Annotated[float | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    early_stopping_patience: Annotated[
        int | None, typer.Option(rich_help_panel=HYPERPARAMETERS)
    ] = None,
    seed: Annotated[int | None, typer.Option(rich_help_panel=HYPERPARAMETERS)] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Watch it to the end, then show the result.")
    ] = False,
) -> None:
    """Train a new version of MODEL (made, private, if it does not exist) on datasets."""
    if (architecture is None) == (base_version is None):
        raise typer.BadParameter(
            "give one: an architecture to train from scratch, or a version to fine-tune",
            param_hint="'--architecture' / '--base-version'",
        )
    if config is not None and base_version is not None:
        raise typer.BadParameter(
            "goes with --architecture: a fine-tune keeps its base's config", param_hint="'--config'"
        )
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "early_stopping_patience": early_stopping_patience,
        "seed": seed,
    }
    spec = json_object(config, "--config")
    client = remote.client()
    job = client.trainings.create(
        name,
        dataset[0] if len(dataset) == 1 else dataset,
        architecture=architecture,
        config=spec,
        base_version=version_ref(base_version),
        **{key: value for key, value in given.items() if value is not None},
    )
    started = job.training
    if not follow:
        remote.show(started, f"training {started.id} {started.status}")
        return
    if remote.json:
        for _ in job.events():
            pass
    else:
        output.line(f"training {started.id} of {name}: {started.status}")
        watch(job.events())
    finished = client.trainings.get(job.id)
    remote.show(finished, lambda: summary(finished))
    if finished.status != "succeeded":
        typer.echo(f"error: training {finished.status}: {finished.error or ''}", err=True)
        raise typer.Exit(1)


def watch(events: Iterable[TrainingEvent]) -> None:
    """Show each epoch as it ends, until the ``end`` event."""
    console = output.console()
    if not console.is_terminal:
        for event in events:
            if event.event == "epoch":
                step, losses = _epoch(event.data)
                output.line(f"{step}  {losses}")
        return
    columns = (
        TextColumn("{task.fields[step]}"),
        BarColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("training", total=None, step="queued", losses="")
        for event in events:
            if event.event == "epoch":
                step, losses = _epoch(event.data)
                done, total = event.data.get("epoch"), event.data.get("epochs")
                progress.update(task, completed=done, total=total, step=step, losses=losses)


def summary(training: Training) -> None:
    """The loss curve, the test-split figures and the version a finished training made."""
    metrics: Mapping[str, Any] = training.metrics or {}
    history = metrics.get("history") or []
    chart = curve.render(
        [
            ("train loss", [entry.get("train_loss") for entry in history]),
            ("val loss", [entry.get("val_loss") for entry in history]),
        ]
    )
    for text in chart:
        output.line(text)
    figures = output.scalars(metrics)
    if figures:
        output.fields(figures)
    base = metrics.get("base")
    if isinstance(base, Mapping) and base.get("metrics"):
        compared = output.headline(base["metrics"])
        output.line(f"base version {base.get('version')} on the same test split: {compared}")
    if training.version is not None:
        output.line(f"{training.model} version {training.version} is ready")


def _epoch(data: Mapping[str, Any]) -> tuple[str, str]:
    """('epoch 3/40', 'train loss 0.4121  val loss 0.4380  ETA 12s') for an epoch event."""
    step = f"epoch {data.get('epoch')}/{data.get('epochs')}"
    losses = f"train loss {_loss(data.get('train_loss'))}  val loss {_loss(data.get('val_loss'))}"
    return step, f"{losses}  ETA {_eta(data.get('eta_s'))}"


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _eta(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
