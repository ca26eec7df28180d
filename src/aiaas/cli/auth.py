"""Accounts and credentials from a shell: sign up, log in (a new API key, stored in the config
file for the other commands), and API keys.

The server manages API keys only with a login token, never with an API key (a leaked key must
not mint others), so ``aiaas keys ...`` log in for each call with --email and --password
(or AIAAS_EMAIL / AIAAS_PASSWORD, or prompts) and keep no token anywhere.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Annotated

import typer

from aiaas.cli import output
from aiaas.cli.arguments import Email, NewPassword, Password
from aiaas.cli.remote import PANEL, Remote, command
from aiaas.client.config import Config, write_file

app = typer.Typer()
keys_app = typer.Typer(
    help="API keys. Managed with a login token: give --email and --password (or "
    "AIAAS_EMAIL / AIAAS_PASSWORD), or answer the prompts.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys", rich_help_panel=PANEL)

DEFAULT_SCOPES = ("models:read", "models:write", "predict", "train")
KEYS: tuple[output.Column, ...] = (
    "id",
    "name",
    "prefix",
    "scopes",
    ("created", "created_at"),
    ("expires", "expires_at"),
    ("last used", "last_used_at"),
    "revoked",
)

Scopes = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        "--scopes",
        help="A scope to grant; repeat it or separate with commas. "
        f"Default: {', '.join(DEFAULT_SCOPES)}.",
    ),
]
ExpiresInDays = Annotated[
    int | None, typer.Option("--expires-in-days", min=1, help="The key stops working after this.")
]


def scopes(given: list[str] | None) -> list[str]:
    if not given:
        return list(DEFAULT_SCOPES)
    return [scope.strip() for item in given for scope in item.split(",") if scope.strip()]


@command(app, keyed=False, rich_help_panel=PANEL)
def register(remote: Remote, email: Email, password: NewPassword) -> None:
    """Create an account (then `aiaas login`)."""
    account = remote.anonymous().accounts.register(email, password)
    remote.show(account, f"registered {account.email} ({account.id})")


@command(app, keyed=False, rich_help_panel=PANEL)
def login(
    remote: Remote,
    email: Email,
    password: Password,
    key_name: Annotated[
        str | None,
        typer.Option("--key-name", help="The new key's name (default: aiaas cli on <host>)."),
    ] = None,
    scope: Scopes = None,
    expires_in_days: ExpiresInDays = None,
) -> None:
    """Log in: a new API key, stored with the URL for the other commands.

    The config file is ~/.config/aiaas/config.toml (or AIAAS_CONFIG), mode 0600."""
    owner = remote.owner(email, password)
    name = key_name or f"aiaas cli on {socket.gethostname()}"[:100]
    key = owner.keys.create(name, scopes(scope), expires_in_days=expires_in_days)
    assert key.key is not None  # the create answer always carries the secret
    path = write_file(Config(base_url=owner.base_url, api_key=key.key))
    # The secret went to the file; it is not repeated on the screen or into a script's logs.
    stored = dataclasses.replace(key, key=None)
    summary = {"email": email, "base_url": owner.base_url, "config": path, "key": stored}
    remote.show(
        summary,
        f"logged in to {owner.base_url} as {email}; "
        f"API key '{key.name}' ({key.prefix}…) stored in {path}",
    )


@command(keys_app, "create", keyed=False)
def create_key(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="A name to know the key by.")],
    email: Email,
    password: Password,
    scope: Scopes = None,
    expires_in_days: ExpiresInDays = None,
) -> None:
    """Make an API key. Its secret is printed this once (the last line)."""
    key = remote.owner(email, password).keys.create(
        name, scopes(scope), expires_in_days=expires_in_days
    )

    def human() -> None:
        output.record(KEYS, key)
        output.line("secret (shown this once):")
        output.line(str(key.key))

    remote.show(key, human)


@command(keys_app, "list", keyed=False)
def list_keys(remote: Remote, email: Email, password: Password) -> None:
    """Your API keys (never their secrets)."""
    remote.table(KEYS, remote.owner(email, password).keys.list())


@command(keys_app, "revoke", keyed=False)
def revoke_key(
    remote: Remote,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (`aiaas keys list`).")],
    email: Email,
    password: Password,
) -> None:
    """Revoke an API key: it stops working at once."""
    remote.owner(email, password).keys.revoke(key_id)
    remote.show({"revoked": key_id}, f"revoked {key_id}")
