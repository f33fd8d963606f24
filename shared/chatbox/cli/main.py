"""`chatbox` CLI: migrate, bootstrap, api, dev, operator and vault commands."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from chatbox.compose import build_runtime, discover_platforms
from chatbox.domain.errors import ChatboxError
from chatbox.domain.redaction import RedactingFormatter, install_log_redaction, redact, redact_url, register_secrets
from chatbox.domain.settings import DevSettings, Settings, get_settings
from chatbox.runtime import Runtime
from chatbox.services import accounts, connections, credentials, mailboxes
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from chatbox.store.models import Delivery, Mailbox

# No local variables in a traceback: they hold settings, tokens and opened credentials.
app = typer.Typer(
    help="chatbox: messaging platforms behind one API for AI agents.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
operator = typer.Typer(help="Operator chores across all accounts.", no_args_is_help=True)
vault_cli = typer.Typer(help="Vault key management.", no_args_is_help=True)
app.add_typer(operator, name="operator")
app.add_typer(vault_cli, name="vault")
connector_cli = typer.Typer(help="Container connectors' programs (Signal, Discord).", no_args_is_help=True)
app.add_typer(connector_cli, name="connector")

out = Console()
err = Console(stderr=True)

_ID_COLUMNS = frozenset({"id", "account"})

# Libraries that narrate every run at INFO; their warnings still show.
_QUIET_LOGGERS = ("alembic",)


def _fail(message: str, code: int) -> typer.Exit:
    """Print `error: <message>` on stderr (verbatim: ids and names may contain markup) and exit with `code`."""
    err.print(f"[red]error:[/red] {escape(message)}", emoji=False, soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _echo(line: str) -> None:
    """Print a line exactly as given: secrets and user data must not be read as rich markup or emoji codes."""
    typer.echo(line)


def _settings(*, dev: bool = False) -> Settings:
    """The process's settings (`chatbox dev`'s defaults with `dev`); exits 2 naming each invalid variable."""
    try:
        return DevSettings() if dev else get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"CHATBOX_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid configuration: {problems}", 2) from exc


def _configure_logging(settings: Settings) -> None:
    """Log lines on stderr, redacted (no secret, token or credential-bearing URL in any line, at any level:
    `chatbox.domain.redaction`); the same for uvicorn's loggers, which `serve` configures."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        logging.basicConfig(level=settings.log_level.upper(), handlers=[handler])
    except ValueError as exc:  # an unknown level name
        raise _fail(f"invalid configuration: CHATBOX_LOG_LEVEL: {exc}", 2) from exc
    install_log_redaction()
    register_secrets(settings.secret_values())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _reporting_errors() -> Iterator[None]:
    """Turn the errors an operator can act on into one clear line and a non-zero exit, not a traceback."""
    try:
        yield
    except ChatboxError as exc:
        raise _fail(exc.message, 1) from exc
    except OperationalError as exc:
        raise _fail(f"database unavailable: {exc.orig or exc}", 1) from exc


@contextmanager
def _runtime(settings: Settings | None = None, *, generate_vault_key: bool = False) -> Iterator[Runtime]:
    settings = settings or _settings()
    _configure_logging(settings)
    try:
        runtime = build_runtime(
            settings,
            generate_vault_key=generate_vault_key,
            platforms=discover_platforms(),
        )
    except ChatboxError as exc:
        raise _fail(exc.message, 2) from exc
    try:
        with _reporting_errors():
            yield runtime
    finally:
        runtime.close()


def _print_first_key(issued: accounts.IssuedKey, *, as_json: bool) -> None:
    if as_json:
        _echo(json.dumps({"account_id": issued.account_id, "api_key": issued.secret}))
        return
    _echo(f"Created account {issued.account_id}.")
    _echo(f"API key (shown once, keep it safe): {issued.secret}")


def _print_rows(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; tab-separated lines otherwise, so ids are never cut and output pipes into tools."""
    if not out.is_terminal:
        for row in (headers, *rows):
            _echo("\t".join(" ".join(cell.split()) for cell in row))
        return
    table = Table(title=title)
    for index, header in enumerate(headers):
        # Ids must stay whole to be copied into the next command; the other columns wrap.
        is_id = header in _ID_COLUMNS
        width = max((len(row[index]) for row in rows), default=0) if is_id else None
        table.add_column(header, no_wrap=is_id, min_width=width, overflow="ellipsis" if is_id else "fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: names are data, never markup
    out.print(table)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run repeatedly). Needs no vault key."""
    settings = _settings()
    _configure_logging(settings)
    database = Database(settings.db_url)
    try:
        with _reporting_errors():
            upgrade_to_head(database.engine)
    finally:
        database.dispose()
    _echo("database is up to date")


@app.command()
def bootstrap(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"account_id", "api_key"}')] = False,
    name: Annotated[str, typer.Option(help="Account name")] = "default",
) -> None:
    """Create the first account and its API key (printed once). Uses CHATBOX_BOOTSTRAP_API_KEY when set.

    Exits 1 when an account already exists: bootstrap never issues a second key.
    """
    with _runtime() as runtime:
        upgrade_to_head(runtime.db.engine)
        with runtime.db.session() as db:
            issued = accounts.bootstrap(db, api_key=runtime.settings.bootstrap_api_key or None, name=name)
        if issued is None:
            raise _fail("an account already exists; bootstrap only creates the first one (nothing changed)", 1)
        _print_first_key(issued, as_json=as_json)


@app.command()
def api() -> None:
    """Serve the REST API and the MCP servers on CHATBOX_API_HOST:CHATBOX_API_PORT (run `chatbox worker` beside it).

    It also receives for connections that need no public URL (long polls, sockets) and runs the programs of
    managed Signal/Discord connections, unless CHATBOX_RUN_CONNECTORS=0.
    """
    from chatbox.local.serve import serve

    with _runtime() as runtime, _live_host(runtime):
        serve(runtime)


@contextmanager
def _live_host(runtime: Runtime) -> Iterator[None]:
    """The live host beside the API (`chatbox.local.live_host`), when CHATBOX_RUN_CONNECTORS allows it."""
    if not runtime.settings.run_connectors:
        yield
        return
    from chatbox.local.live_host import LiveHost, free_loopback_port, local_api_url

    runtime.program_port = free_loopback_port
    with LiveHost(runtime, api_url=local_api_url(runtime.settings)):
        yield


@app.command()
def dev() -> None:
    """Zero set-up: home folder, vault key, migrations, first account, every face served; the delivery worker
    runs as a child process, restarted if it dies and stopped with this one."""
    from chatbox.local.serve import WorkerProcess, prepare_dev_home, serve

    settings = _settings(dev=True)  # loopback webhooks allowed unless configured otherwise
    if settings.queue != "local":
        raise _fail("chatbox dev runs the local queue; unset CHATBOX_QUEUE", 2)
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the vault key and the database
    with _runtime(settings, generate_vault_key=True) as runtime:
        issued = prepare_dev_home(runtime)
        if issued is not None:
            _print_first_key(issued, as_json=False)
        _echo(f"chatbox dev serving on {runtime.settings.public_url} (docs at {runtime.settings.public_url}/docs)")
        with WorkerProcess(["--dev"]), _live_host(runtime):
            serve(runtime)


@app.command()
def worker(
    dev: Annotated[
        bool, typer.Option("--dev", hidden=True, help="chatbox dev's defaults (it starts the worker so)")
    ] = False,
) -> None:
    """Consume the local delivery queue: POST webhooks, retry, dead-letter, sweep (`chatbox dev` starts one)."""
    from chatbox.local.serve import run_worker

    settings = _settings(dev=dev)
    if settings.queue != "local":
        raise _fail("chatbox worker consumes the local queue; with CHATBOX_QUEUE=sqs the delivery Lambda does", 2)
    with _runtime(settings) as runtime:
        run_worker(runtime)


@connector_cli.command("run")
def connector_run(
    connection_id: str,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="Where the program reaches chatbox (default: this machine's API)")
    ] = None,
    dev: Annotated[bool, typer.Option("--dev", help="Read settings with `chatbox dev`'s defaults")] = False,
) -> None:
    """Run a managed Signal or Discord connection's program in the foreground, with the environment chatbox gives it
    (stop the `chatbox dev`/`api` that runs it first: both would take its port). Exits with the program's code;
    1 for an unknown, archived or unmanaged connection."""
    import signal
    import subprocess
    import sys

    from chatbox.local.live_host import local_api_url, program_environment
    from chatbox.services.connector_programs import program_launch

    settings = _settings(dev=dev)
    with _runtime(settings) as runtime, runtime.db.session() as db:
        launch = program_launch(
            db,
            runtime.vault,
            runtime.platforms,
            connection_id,
            api_url=api_url or local_api_url(settings),
            home=settings.home,
        )
    register_secrets(launch.secrets)
    launch.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    err.print(f"running python -m {launch.module} for {launch.platform} connection {connection_id}", highlight=False)
    process = subprocess.Popen([sys.executable, "-m", launch.module], env=program_environment(launch))

    def forward(signum: int, _frame: object) -> None:
        # The program drains on SIGTERM; so does this command, by passing it on and waiting for it.
        process.send_signal(signum)

    # Ctrl-C reaches the child directly (one process group); this process only waits for it to finish.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise typer.Exit(process.wait())


@operator.command("mailbox-list")
def mailbox_list(include_archived: Annotated[bool, typer.Option(help="Show archived mailboxes too")] = False) -> None:
    """Every mailbox of every account (tab-separated when not printed to a terminal)."""
    found: list[list[str]] = []
    with _runtime() as runtime, runtime.db.session() as db:
        cursor: str | None = None
        while True:
            rows, cursor = mailboxes.list_mailboxes(
                db, None, limit=200, cursor=cursor, include_archived=include_archived
            )
            # The host and path only: a receiver's URL may carry a token in its query or userinfo.
            found += [[m.id, m.account_id, m.name, m.status, redact_url(m.webhook_url or "-")] for m in rows]
            if cursor is None:
                break
    _print_rows("mailboxes", ["id", "account", "name", "status", "webhook_url"], found)


@operator.command("connection-list")
def connection_list(mailbox_id: str) -> None:
    """The connections of one mailbox (tab-separated when not printed to a terminal). Exits 1 for an unknown id."""
    found: list[list[str]] = []
    with _runtime() as runtime, runtime.db.session() as db:
        mailboxes.get_mailbox_any_account(db, mailbox_id)
        cursor: str | None = None
        while True:
            rows, cursor = connections.list_connections(db, None, mailbox_id, limit=200, cursor=cursor)
            found += [
                [c.id, c.platform, c.status, ", ".join(sorted(c.secret_refs)) or "-", c.created_at.isoformat()]
                for c in rows
            ]
            if cursor is None:
                break
    _print_rows(f"connections of {mailbox_id}", ["id", "platform", "status", "secrets", "created"], found)


@operator.command("connection-archive")
def connection_archive(connection_id: str) -> None:
    """Archive a connection: its inbound token stops working (Telegram: the webhook is deleted). Exits 1 for an
    unknown id."""
    with _runtime() as runtime, runtime.db.session() as db:
        connection = connections.archive_connection(db, runtime.vault, runtime.platforms, None, connection_id)
    _echo(f"connection {connection.id} archived")


@operator.command("connection-resync")
def connection_resync(connection_id: str) -> None:
    """Register an active Telegram or Slack connection with its platform again (Telegram: setWebhook to the current
    CHATBOX_PUBLIC_URL with a new secret token; Slack: auth.test). Exits 1 for an unknown id or a refusal."""
    with _runtime() as runtime, runtime.db.session() as db:
        connection = connections.resync_connection(
            db, runtime.vault, runtime.platforms, connection_id, public_url=runtime.settings.public_url
        )
        ingest_url = runtime.settings.public_url + connections.ingest_path(
            runtime.platforms, connection.platform, connection.id
        )
    _echo(f"connection {connection.id} resynced; the platform delivers to {ingest_url}")


@operator.command("mailbox-regenerate-mcp-token")
def mailbox_regenerate_mcp_token(mailbox_id: str) -> None:
    """Issue a new MCP token for a mailbox (printed once); the old one stops working. Exits 1 for an unknown id."""
    with _runtime() as runtime, runtime.db.session() as db:
        token = mailboxes.regenerate_mcp_token(db, mailbox_id)
        url = runtime.settings.mcp_url(mailbox_id)
    _echo(f"MCP URL:   {url}")
    _echo(f"MCP token (shown once): {token}")


def _operator_mailbox(db: Session, mailbox_id: str) -> Mailbox:
    return mailboxes.get_mailbox_any_account(db, mailbox_id)


@operator.command("mailbox-health")
def mailbox_health(mailbox_id: str) -> None:
    """Delivery health of a mailbox: status, failure streak, counts, last success and last error."""
    with _runtime() as runtime, runtime.db.session() as db:
        mailbox = _operator_mailbox(db, mailbox_id)
        health = mailboxes.mailbox_health(db, mailbox.account_id, mailbox.id)
    for name, value in health.model_dump(mode="json").items():
        _echo(f"{name}: {'-' if value is None else value}")


@operator.command("mailbox-unpause")
def mailbox_unpause(mailbox_id: str) -> None:
    """Resume a paused mailbox and send what it held, each chat in order."""
    with _runtime() as runtime, runtime.db.session() as db:
        mailbox = _operator_mailbox(db, mailbox_id)
        mailboxes.unpause_mailbox(db, runtime.queue, mailbox.account_id, mailbox.id)
    _echo(f"mailbox {mailbox_id} is active")


@operator.command("redrive")
def redrive(mailbox_id: str) -> None:
    """Re-queue a mailbox's dead letters with a fresh set of attempts."""
    with _runtime() as runtime, runtime.db.session() as db:
        mailbox = _operator_mailbox(db, mailbox_id)
        count = mailboxes.redrive_mailbox(db, runtime.queue, mailbox.account_id, mailbox.id)
    _echo(f"requeued {count} dead deliveries")


def _delivery_row(delivery: Delivery) -> list[str]:
    return [
        delivery.id,
        delivery.status,
        str(delivery.attempts),
        delivery.updated_at.isoformat(timespec="seconds"),
        redact(delivery.last_error or "-"),
    ]


@operator.command("tail-deliveries")
def tail_deliveries(
    mailbox_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many recent deliveries")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new deliveries")] = False,
) -> None:
    """The mailbox's latest deliveries: id, status, attempts, last change, last error."""
    headers = ["id", "status", "attempts", "updated", "last_error"]
    with _runtime() as runtime:
        with runtime.db.session() as db:
            _operator_mailbox(db, mailbox_id)
            rows = mailboxes.recent_deliveries(db, mailbox_id, limit=limit)
        _print_rows(f"deliveries of {mailbox_id}", headers, [_delivery_row(d) for d in rows])
        last = rows[-1].id if rows else None
        while follow:
            time.sleep(1.0)
            with runtime.db.session() as db:
                rows = mailboxes.recent_deliveries(db, mailbox_id, limit=500, after=last)
            for delivery in rows:
                _echo("\t".join(_delivery_row(delivery)))
            last = rows[-1].id if rows else last


@vault_cli.command("rotate")
def vault_rotate() -> None:
    """Re-encrypt every credential under CHATBOX_VAULT_KEY (old keys stay readable via CHATBOX_VAULT_OLD_KEYS).

    Exits 1, naming the credential, when one was sealed by a key that is not configured.
    """
    with _runtime() as runtime, runtime.db.session() as db:
        count = credentials.rotate_all(db, runtime.vault)
    _echo(f"re-encrypted {count} credential(s) under key {runtime.vault.current_key_id}")


@vault_cli.command("generate-key")
def vault_generate_key() -> None:
    """Print a new random vault key (base64 of 32 bytes) for CHATBOX_VAULT_KEY."""
    from chatbox.domain.vault import generate_key

    _echo(generate_key())


if __name__ == "__main__":
    app()
