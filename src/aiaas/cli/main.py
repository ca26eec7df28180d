"""The ``aiaas`` command: run the platform and manage it from a shell; the client commands
(login, models, predict, train...) are registered from their own modules, over the SDK."""

from __future__ import annotations

import asyncio
import gc
import getpass
import logging
import sys
from typing import Annotated, Literal

import typer

from aiaas import __version__
from aiaas.cli import auth, datasets, predict, registry, train, usage

app = typer.Typer(
    help="aiaas: AI models as a service. Run the gateway, migrate the database, manage users; "
    "or use a platform from a shell: log in, push models, predict, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
# The client commands: each module's commands and groups, over the SDK alone.
for commands in (auth.app, registry.app, predict.app, datasets.app, train.app, usage.app):
    app.add_typer(commands)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aiaas {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """aiaas: AI models as a service."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    migrate: Annotated[bool, typer.Option(help="Apply database migrations first.")] = True,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the gateway: embedded unless AIAAS_DATABASE_URL or AIAAS_BROKER_URL say otherwise."""
    import uvicorn

    from aiaas.config import get_settings
    from aiaas.logs import configure_logging
    from aiaas.main import create_app
    from aiaas.migrate import upgrade
    from aiaas.serving.executor import use_batch_scheduling

    settings = get_settings()
    configure_logging(settings.log_format, log_level, access_log=settings.access_log)
    if settings.sched_batch:
        # Before any thread starts: threads inherit the policy of the thread that starts them.
        use_batch_scheduling()
    if migrate:
        upgrade(settings.resolved_database_url)
    application = create_app(settings)
    # Long-lived objects from start-up would otherwise be rescanned by every full collection.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level=log_level,
        # Logging is configured above (JSON lines); the access lines are the gateway's own.
        log_config=None,
        access_log=False,
        http=_http_protocol(),
    )


def _http_protocol() -> type[asyncio.Protocol] | Literal["auto"]:
    """uvicorn's httptools protocol writing each response in one piece, or uvicorn's own
    choice where httptools is not installed."""
    try:
        from aiaas.http_protocol import CoalescingHttpToolsProtocol
    except ImportError:
        return "auto"
    return CoalescingHttpToolsProtocol


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = (
        "predict,training"
    ),
    concurrency: Annotated[
        int, typer.Option(help="Worker processes; 1 runs tasks in this process (one per GPU).")
    ] = 1,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus metrics on this port.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for --metrics-port (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker (distributed mode; needs AIAAS_BROKER_URL)."""
    from aiaas.config import get_settings
    from aiaas.jobs import PREDICT_QUEUE
    from aiaas.logs import configure_logging
    from aiaas.metrics import MetricsServer
    from aiaas.serving.executor import use_batch_scheduling
    from aiaas.tasks import JOB_KINDS
    from aiaas.worker import supervisor, tasks
    from aiaas.worker.celery_app import create_celery

    settings = get_settings()
    configure_logging(settings.log_format, log_level, access_log=settings.access_log)
    if not supervisor.is_child():
        raise typer.Exit(supervisor.supervise([sys.executable, "-m", "aiaas", *sys.argv[1:]]))
    if settings.sched_batch:
        # The batch thread and Celery's loop hand batches over the same way (see serve).
        use_batch_scheduling()
    celery = create_celery(settings)
    tasks.register(celery, JOB_KINDS)
    assert settings.broker_url
    supervisor.start_broker_watchdog(settings.broker_url, timeout_s=settings.broker_timeout_s)
    if concurrency == 1:
        # Build the context now: a bad AIAAS_DEVICE fails at start, and the device metric shows.
        tasks.context()
    if metrics_port is not None:
        MetricsServer(
            tasks.worker_metrics().registry,
            host=metrics_host,
            port=metrics_port,
            token=settings.scrape_token,
        ).start()
    if PREDICT_QUEUE in queues.split(","):
        # Sync batches come on a list of their own, beside the Celery queue (serving.wire).
        tasks.serve_batches(PREDICT_QUEUE, forked=concurrency > 1)
    pool = "solo" if concurrency == 1 else "prefork"
    celery.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--loglevel={log_level}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from aiaas.config import get_settings
    from aiaas.migrate import upgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upgrade(get_settings().resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision ('base' drops everything).")],
) -> None:
    """Revert migrations down to REVISION."""
    from aiaas.config import get_settings
    from aiaas.migrate import downgrade

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    downgrade(get_settings().resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="The account to make admin (created if missing).")],
    password: Annotated[
        str | None,
        typer.Option(
            envvar="AIAAS_ADMIN_PASSWORD",
            help="Password for a new account; asked for when the account is new and none given.",
        ),
    ] = None,
) -> None:
    """Make the account with EMAIL an administrator, creating it if it does not exist."""
    from pydantic import TypeAdapter, ValidationError

    from aiaas.accounts import service
    from aiaas.accounts.schemas import Email, Password
    from aiaas.config import get_settings
    from aiaas.db import Database
    from aiaas.errors import AppError

    try:
        address = TypeAdapter(Email).validate_python(email)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"], param_hint="--email") from exc
    database = Database.from_url(get_settings().resolved_database_url)
    try:
        with database.session() as session:
            if password is None and not service.account_exists(session, email=address):
                password = getpass.getpass("Password for the new admin account: ")
            if password is not None:
                try:
                    TypeAdapter(Password).validate_python(password)
                except ValidationError as exc:
                    raise typer.BadParameter(
                        exc.errors()[0]["msg"], param_hint="--password"
                    ) from exc
            try:
                user, created = service.ensure_admin(session, email=address, password=password)
            except AppError as exc:
                typer.echo(f"error: {exc.detail}", err=True)
                raise typer.Exit(1) from exc
            typer.echo(f"{'created' if created else 'promoted'} admin {user.email} ({user.id})")
    finally:
        database.dispose()


def main() -> None:
    from aiaas.config import ConfigurationError

    try:
        app()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
