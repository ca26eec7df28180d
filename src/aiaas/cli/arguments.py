"""What a user types, turned into what the SDK takes. A value that cannot be is a usage error
(exit 2) naming the option, before anything is sent."""

from __future__ import annotations

import json
from typing import Annotated, Any, overload

import typer

ModelName = Annotated[str, typer.Argument(metavar="MODEL", help="The model's name.")]
Labels = Annotated[
    str | None, typer.Option("--labels", help="Class labels in output order, comma-separated.")
]

Task = Annotated[str, typer.Option("--task", help="classification or regression.")]


def _password(*, new: bool) -> Any:
    return typer.Option(
        "--password",
        envvar="AIAAS_PASSWORD",
        prompt=True,
        hide_input=True,
        confirmation_prompt=new,
        help="Asked for (twice for a new account) when neither given nor in AIAAS_PASSWORD.",
    )


# The credentials of an account, for what only a login token may do (sign-up, API keys).
Email = Annotated[
    str, typer.Option("--email", envvar="AIAAS_EMAIL", prompt=True, help="Your account's email.")
]
Password = Annotated[str, _password(new=False)]
NewPassword = Annotated[str, _password(new=True)]


def json_value(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=f"'{option}'") from exc


def json_object(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json_value(text, option)
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=f"'{option}'")
    return value


def comma_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


@overload
def version_ref(text: str) -> int | str: ...
@overload
def version_ref(text: None) -> None: ...
def version_ref(text: str | None) -> int | str | None:
    """A version number or an alias, as the API tells them apart: by type."""
    if text is None:
        return None
    return int(text) if text.isdigit() else text
