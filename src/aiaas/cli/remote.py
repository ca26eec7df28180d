"""How every client command runs: the options they all take, the SDK client they are given,
and the one place where the SDK's errors become messages and exit codes::

    0  done
    1  the server refused (its problem's title, detail and field errors on stderr),
       or could not be reached
    2  the command was used wrongly: a bad option, an unreadable file, invalid JSON

``command`` adds ``--json``, ``--base-url`` and ``--api-key`` to a function's own parameters
(Typer reads a command's options from its signature) and calls it with a ``Remote``, so those
options, their help and the error handling are written once, not in each command.

The client commands import the SDK and nothing of the server: a laptop that only talks to a
platform never loads torch, FastAPI or SQLAlchemy.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from aiaas.cli import output
from aiaas.client import AiaasError, Client, RateLimited, TransportError
from aiaas.client.config import resolve

F = TypeVar("F", bound=Callable[..., None])

# Where the client commands show in `aiaas --help`, apart from the server's own.
PANEL = "Use a platform"


class Remote:
    """The server a command talks to and how it answers: JSON or text for people."""

    def __init__(self, *, json: bool, base_url: str | None, api_key: str | None) -> None:
        self.json = json
        self.base_url = base_url
        self.api_key = api_key
        self._clients: list[Client] = []

    def client(self) -> Client:
        """The SDK client with the API key: --api-key, AIAAS_API_KEY or the config file."""
        client = self._open(self.api_key)
        if client.api_key is None:
            raise typer.BadParameter(
                "no API key: run `aiaas login`, set AIAAS_API_KEY or pass it",
                param_hint="'--api-key'",
            )
        return client

    def anonymous(self) -> Client:
        """A client for sign-up and login, which need no key (a stale one is ignored)."""
        return self._open(None)

    def owner(self, email: str, password: str) -> Client:
        """A client holding a fresh login token: the one credential that manages API keys."""
        token = self.anonymous().accounts.login(email, password)
        return self._open(token.access_token)

    def server(self) -> str:
        if self._clients:
            return self._clients[0].base_url
        try:
            return resolve(self.base_url).base_url
        except ValueError:
            return self.base_url or "the server"

    def show(self, value: Any, human: str | Callable[[], None]) -> None:
        """``value`` as JSON under --json, else ``human``: a line, or what it prints."""
        if self.json:
            output.print_json(value)
        elif isinstance(human, str):
            output.line(human)
        else:
            human()

    def table(self, columns: Sequence[output.Column], items: Sequence[Any]) -> None:
        """``items`` as a JSON list under --json, else as a table."""
        self.show(items, lambda: output.table(columns, items))

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def _open(self, api_key: str | None) -> Client:
        try:
            client = Client(self.base_url, api_key)
        except ValueError as exc:  # the config file is there but unreadable
            raise typer.BadParameter(str(exc), param_hint="the config file") from exc
        self._clients.append(client)
        return client


def problem_lines(error: AiaasError) -> list[str]:
    """A problem document as people read it: title and detail, then each field's error."""
    first = f"error: {error.title}"
    if error.detail and error.detail != error.title:
        first += f": {error.detail}"
    if isinstance(error, RateLimited) and error.retry_after is not None:
        first += f" (retry after {error.retry_after:g} s)"
    lines = [first]
    for item in error.errors:
        loc = [str(part) for part in item.get("loc", [])]
        if loc[:1] == ["body"]:
            loc = loc[1:]
        lines.append(f"  {'.'.join(loc) or '-'}: {item.get('msg', '')}")
    return lines


def _fail(lines: list[str]) -> NoReturn:
    for text in lines:
        typer.echo(text, err=True)
    raise typer.Exit(1)


def _shared_options(*, keyed: bool, output_flag: str) -> list[inspect.Parameter]:
    def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(name, kind, default=default, annotation=annotation)

    shared = [
        option(
            "output_json",
            Annotated[bool, typer.Option(output_flag, help="Print machine-readable JSON.")],
            False,
        ),
        option(
            "base_url",
            Annotated[
                str | None,
                typer.Option(
                    "--base-url",
                    help="The platform's URL (else AIAAS_BASE_URL, the config file, "
                    "http://127.0.0.1:8000).",
                ),
            ],
            None,
        ),
    ]
    if keyed:
        shared.append(
            option(
                "api_key",
                Annotated[
                    str | None,
                    typer.Option(
                        "--api-key", help="API key (else AIAAS_API_KEY, then the config file)."
                    ),
                ],
                None,
            )
        )
    return shared


def command(
    group: typer.Typer,
    name: str | None = None,
    *,
    keyed: bool = True,
    output_flag: str = "--json",
    **settings: Any,
) -> Callable[[F], F]:
    """Register ``fn(..., remote: Remote)`` on ``group`` as a client command. ``keyed``: it
    takes --api-key; ``output_flag``: the name of its JSON switch."""

    def register(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "remote"]
        shared = _shared_options(keyed=keyed, output_flag=output_flag)

        @functools.wraps(fn)
        def run(
            *args: Any,
            output_json: bool,
            base_url: str | None,
            api_key: str | None = None,
            **kwargs: Any,
        ) -> None:
            remote = Remote(json=output_json, base_url=base_url, api_key=api_key)
            try:
                fn(*args, remote=remote, **kwargs)
            except AiaasError as exc:
                _fail(problem_lines(exc))
            except TransportError as exc:
                _fail([f"error: cannot reach {remote.server()} ({exc})"])
            finally:
                remote.close()

        run.__signature__ = signature.replace(parameters=own + shared)  # type: ignore[attr-defined]
        group.command(name, **settings)(run)
        return fn

    return register
