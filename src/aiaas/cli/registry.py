"""The model registry from a shell: models, their versions (weights pushed as safetensors) and
aliases such as ``production`` that point at a version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aiaas.cli import output
from aiaas.cli.arguments import Labels, ModelName, Task, comma_list, json_object, version_ref
from aiaas.cli.remote import PANEL, Remote, command

app = typer.Typer()
models_app = typer.Typer(
    help="Models: register, inspect, push weights, delete.", no_args_is_help=True
)
versions_app = typer.Typer(help="A model's versions.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Aliases: names such as production that point at a version.", no_args_is_help=True
)
app.add_typer(models_app, name="models", rich_help_panel=PANEL)
app.add_typer(versions_app, name="versions", rich_help_panel=PANEL)
app.add_typer(alias_app, name="alias", rich_help_panel=PANEL)

MODELS: tuple[output.Column, ...] = (
    "name",
    "task",
    ("latest", "latest_version"),
    "aliases",
    "visibility",
    "owned",
    "description",
)
VERSIONS: tuple[output.Column, ...] = (
    "version",
    "architecture",
    "parameters",
    ("size", lambda version: output.size(version.size_bytes)),
    "aliases",
    ("test metrics", lambda version: output.headline(version.metrics)),
    ("created", "created_at"),
)


@command(models_app, "list")
def list_models(remote: Remote) -> None:
    """The models you may use: yours and the public ones."""
    remote.table(MODELS, remote.client().models.list())


@command(models_app, "show")
def show_model(remote: Remote, name: ModelName) -> None:
    """One model, with its versions."""
    client = remote.client()
    model = client.models.get(name)

    def human() -> None:
        output.record((*MODELS, "labels", ("created", "created_at")), model)
        output.table(VERSIONS, client.versions.list(name), title="versions")

    remote.show(model, human)


@command(models_app, "create")
def create_model(
    remote: Remote,
    name: ModelName,
    task: Task,
    labels: Labels = None,
    description: Annotated[str, typer.Option("--description", help="What it does.")] = "",
    public: Annotated[
        bool, typer.Option("--public", help="Let every account use it (yours alone change it).")
    ] = False,
) -> None:
    """Register a model: a lowercase slug, its task and class labels. Then push weights."""
    model = remote.client().models.create(
        name,
        task,
        labels=comma_list(labels),
        description=description,
        visibility="public" if public else "private",
    )
    remote.show(model, f"created {model.task} model {model.name}")


@command(models_app, "push")
def push(
    remote: Remote,
    name: ModelName,
    weights: Annotated[
        Path,
        typer.Option(
            "--weights",
            exists=True,
            dir_okay=False,
            readable=True,
            help="A .safetensors file of the architecture's state dict.",
        ),
    ],
    architecture: Annotated[
        str, typer.Option("--architecture", help="mlp, cnn, rnn... (GET /v1/architectures).")
    ],
    config: Annotated[str, typer.Option("--config", help="The architecture's config, as JSON.")],
    labels: Labels = None,
) -> None:
    """Upload weights as the model's next version.

    They are checked against the architecture before anything is stored."""
    spec = json_object(config, "--config")
    assert spec is not None
    version = remote.client().models.push(
        name, weights, architecture, spec, labels=comma_list(labels)
    )
    remote.show(
        version,
        f"pushed {name} version {version.version}: {version.architecture}, "
        f"{version.parameters} parameters, {output.size(version.size_bytes)}",
    )


@command(models_app, "delete")
def delete_model(
    remote: Remote,
    name: ModelName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask first.")] = False,
) -> None:
    """Delete a model with all its versions and aliases."""
    if not yes:
        typer.confirm(f"Delete {name} with all its versions?", abort=True)
    remote.client().models.delete(name)
    remote.show({"deleted": name}, f"deleted {name}")


@command(versions_app, "list")
def list_versions(remote: Remote, name: ModelName) -> None:
    """A model's versions, newest first."""
    remote.table(VERSIONS, remote.client().versions.list(name))


@command(alias_app, "set")
def set_alias(
    remote: Remote,
    name: ModelName,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production.")],
    version: Annotated[str, typer.Argument(metavar="VERSION", help="A number or an alias.")],
) -> None:
    """Point ALIAS at VERSION (made if new, moved if not)."""
    pointed = remote.client().aliases.set(name, alias, version_ref(version))
    remote.show(pointed, f"{name}:{pointed.alias} → {pointed.version}")


@command(alias_app, "rm")
def remove_alias(
    remote: Remote,
    name: ModelName,
    alias: Annotated[str, typer.Argument(metavar="ALIAS")],
) -> None:
    """Remove an alias (the version stays)."""
    remote.client().aliases.delete(name, alias)
    remote.show({"removed": alias}, f"removed {name}:{alias}")
