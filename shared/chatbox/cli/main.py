"""`chatbox` CLI: migrate, bootstrap, api, dev, doctor, status, accounts and keys, operator and vault commands."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session
from typer.core import TyperOption

from chatbox import __version__
from chatbox.cli.doctor import doctor_results
from chatbox.cli.home import HomeNotFoundError, find_home
from chatbox.cli.tables import print_rows
from chatbox.compose import build_runtime, discover_platforms
from chatbox.domain.errors import ChatboxError
from chatbox.domain.redaction import RedactingFormatter, install_log_redaction, redact, redact_url, register_secrets
from chatbox.domain.schemas import DeliveryStatus
from chatbox.domain.settings import DevSettings, Settings
from chatbox.ports.probe import ProbeResult
from chatbox.runtime import Runtime
from chatbox.services import accounts, connections, credentials, mailboxes
from chatbox.services.deployment_status import deployment_status
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from chatbox.store.models import Delivery, Mailbox

if TYPE_CHECKING:
    from fastapi import FastAPI


def _flag_type_hidden(option: TyperOption, ctx: typer.Context) -> str | None:
    """A flag takes no value, so its help row shows no `<bool>` type (typer >= 0.20 prints one for every option)."""
    return None if option.is_flag else _typer_display_type(option, ctx)


_typer_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type_hidden  # type: ignore[method-assign,assignment]

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
keys_cli = typer.Typer(help="API keys of an account (the operator's side of /v1/api-keys).", no_args_is_help=True)
app.add_typer(keys_cli, name="keys")
account_cli = typer.Typer(help="Accounts (tenants): create one with its first key, list them.", no_args_is_help=True)
app.add_typer(account_cli, name="account")

out = Console()
err = Console(stderr=True)

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
    """The process's settings (`chatbox dev`'s defaults with `dev`); exits 2 naming each invalid variable.

    The home is CHATBOX_HOME, else the nearest `.chatbox` folder here or above (`chatbox.cli.home`); without one,
    `chatbox dev` makes `./.chatbox`, and other commands exit 2 naming where they looked, unless the database
    is configured (CHATBOX_DB_URL), which is all they need a home for.
    """
    kind = DevSettings if dev else Settings
    try:
        settings = kind()
        if "home" in settings.model_fields_set:
            return settings
        try:
            return kind(home=find_home(Path.cwd()))
        except HomeNotFoundError as exc:
            # The derived default names the home; any other database makes the home optional.
            if dev or settings.db_url != f"sqlite:///{settings.home / 'chatbox.db'}":
                return settings
            raise _fail(str(exc), 2) from exc
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
    except (OperationalError, ProgrammingError) as exc:
        detail = str(exc.orig or exc).strip().splitlines()[0]
        if _MISSING_TABLE.search(detail):
            raise _fail(f"the database has no chatbox schema yet ({detail}): run `chatbox migrate`", 1) from exc
        raise _fail(f"database unavailable: {detail}", 1) from exc


# SQLite's and Postgres's words for a table that is not there: the schema was never migrated.
_MISSING_TABLE = re.compile(r"no such table|relation \S+ does not exist")


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


@contextmanager
def _read_only_session() -> Iterator[Session]:
    """A database session without the runtime: listings read no secret, so they need no vault key."""
    settings = _settings()
    _configure_logging(settings)
    database = Database(settings.db_url)
    try:
        with _reporting_errors(), database.session() as db:
            yield db
    finally:
        database.dispose()


def _print_first_key(issued: accounts.IssuedKey, *, as_json: bool) -> None:
    if as_json:
        _echo(json.dumps({"account_id": issued.account_id, "api_key": issued.secret}))
        return
    _echo(f"Created account {issued.account_id}.")
    _echo(f"API key (shown once, keep it safe): {issued.secret}")


def _print_rows(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print_rows(out, title, headers, rows)


def _show_version(value: bool) -> None:
    if value:
        _echo(f"chatbox {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """chatbox: messaging platforms behind one API for AI agents.

    Commands find their home in CHATBOX_HOME, else in the nearest .chatbox folder here or above.
    """


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


_WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        envvar="CHATBOX_API_WORKERS",
        min=1,
        help="Processes serving the API on the one port (CHATBOX_API_WORKERS); the live host runs once, in this one",
    ),
]
# Tells the worker processes of `--workers N` to read their settings with `chatbox dev`'s defaults.
_DEV_WORKERS_ENV = "_CHATBOX_DEV_WORKERS"


@app.command()
def api(workers: _WorkersOption = 1) -> None:
    """Serve the REST API and the MCP servers on CHATBOX_API_HOST:CHATBOX_API_PORT (run `chatbox worker` beside it).

    It also receives for connections that need no public URL (long polls, sockets) and runs the programs of
    managed Signal/Discord connections, unless CHATBOX_RUN_CONNECTORS=0.
    """
    from chatbox.local.serve import serve

    with _runtime() as runtime, _live_host(runtime):
        _hand_settings_to_workers(runtime.settings, dev=False)
        serve(runtime, workers=workers, app_factory=_WORKER_APP)


_WORKER_APP = "chatbox.cli.main:worker_app"


def _hand_settings_to_workers(settings: Settings, *, dev: bool) -> None:
    """Worker processes read their settings afresh: the same home (absolute: found here, not searched again) and
    the same kind of defaults."""
    os.environ["CHATBOX_HOME"] = str(settings.home.resolve())
    os.environ[_DEV_WORKERS_ENV] = "1" if dev else ""


def worker_app() -> FastAPI:
    """uvicorn's app factory for `--workers N`: each worker process builds its own runtime and app."""
    from chatbox.asgi import create_app
    from chatbox.local.serve import freeze_startup_objects

    settings = _settings(dev=os.environ.get(_DEV_WORKERS_ENV) == "1")
    _configure_logging(settings)
    runtime = build_runtime(settings, platforms=discover_platforms())
    if settings.run_connectors:
        from chatbox.local.live_host import free_loopback_port

        # A connection created through this worker gets its program's port; the live host starts the program.
        runtime.program_port = free_loopback_port
    served = create_app(runtime)
    freeze_startup_objects()
    return served


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


_DEV_VARIABLES = """\b
Variables that matter (environment or ./.env):
  CHATBOX_API_PORT      port to listen on (8000)
  CHATBOX_API_HOST      address to listen on (127.0.0.1)
  CHATBOX_HOME          database, vault key, connector state
                        (default: the nearest .chatbox, else ./.chatbox)
  CHATBOX_PUBLIC_URL    the URL platforms and agents reach, e.g. a
                        tunnel's https URL (http://HOST:PORT)
  CHATBOX_DB_URL        another database (sqlite in CHATBOX_HOME)
  CHATBOX_RUN_CONNECTORS=0  receive no live platform here"""


@app.command(epilog=_DEV_VARIABLES)
def dev(workers: _WorkersOption = 1) -> None:
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
            _hand_settings_to_workers(runtime.settings, dev=True)
            serve(runtime, workers=workers, app_factory=_WORKER_APP)


@app.command()
def worker(
    dev: Annotated[
        bool, typer.Option("--dev", hidden=True, help="chatbox dev's defaults (it starts the worker so)")
    ] = False,
) -> None:
    """Consume the local delivery queue: POST webhooks, retry, dead-letter, sweep (`chatbox dev` starts one)."""
    from chatbox.local.worker import run_worker

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
    """Every mailbox of every account, with its last delivery (tab-separated when not printed to a terminal)."""
    found: list[list[str]] = []
    with _read_only_session() as db:
        cursor: str | None = None
        while True:
            rows, cursor = mailboxes.list_mailboxes(
                db, None, limit=200, cursor=cursor, include_archived=include_archived
            )
            # The host and path only: a receiver's URL may carry a token in its query or userinfo.
            found += [
                [m.id, m.account_id, m.name, m.status, redact_url(m.webhook_url or "-"), _when(m.last_success_at)]
                for m in rows
            ]
            if cursor is None:
                break
    _print_rows("mailboxes", ["id", "account", "name", "status", "webhook_url", "last_delivery"], found)


def _when(moment: datetime | None) -> str:
    """A stored time (UTC) to the second; the space lets a narrow table wrap it between date and time."""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


@operator.command("connection-list")
def connection_list(mailbox_id: str) -> None:
    """The connections of one mailbox (tab-separated when not printed to a terminal). Exits 1 for an unknown id."""
    found: list[list[str]] = []
    with _read_only_session() as db:
        mailboxes.get_mailbox_any_account(db, mailbox_id)
        cursor: str | None = None
        while True:
            rows, cursor = connections.list_connections(db, None, mailbox_id, limit=200, cursor=cursor)
            found += [
                [c.id, c.platform, c.status, ", ".join(sorted(c.secret_refs)) or "-", _when(c.created_at)] for c in rows
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
    with _read_only_session() as db:
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


DELIVERY_HEADERS = ["id", "status", "attempts", "updated", "next_retry", "last_error"]


def _delivery_row(delivery: Delivery) -> list[str]:
    retry = delivery.next_attempt_at if delivery.status == DeliveryStatus.pending.value else None
    return [
        delivery.id,
        delivery.status,
        str(delivery.attempts),
        _when(delivery.updated_at),
        _when(retry),
        redact(delivery.last_error or "-"),
    ]


@operator.command("tail-deliveries")
def tail_deliveries(
    mailbox_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many recent deliveries")] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new deliveries (Ctrl-C stops)")] = False,
) -> None:
    """The mailbox's latest deliveries: id, status, attempts, last change, when a pending one is retried next
    (`-` when due now or not pending), last error."""
    with _read_only_session() as db:
        _operator_mailbox(db, mailbox_id)
        rows = mailboxes.recent_deliveries(db, mailbox_id, limit=limit)
        _print_rows(f"deliveries of {mailbox_id}", DELIVERY_HEADERS, [_delivery_row(d) for d in rows])
        last = rows[-1].id if rows else None
        try:
            while follow:
                sys.stdout.flush()  # a follower reads lines as they come, also through a pipe
                time.sleep(1.0)
                db.rollback()  # a fresh snapshot: see what committed since
                rows = mailboxes.recent_deliveries(db, mailbox_id, limit=500, after=last)
                for delivery in rows:
                    _echo("\t".join(_delivery_row(delivery)))
                last = rows[-1].id if rows else last
        except KeyboardInterrupt:
            return


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


# --- accounts and keys ---------------------------------------------------------------------


@account_cli.command("create")
def account_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"account_id", "api_key"}')] = False,
) -> None:
    """Create an account (a tenant) and print its id and first API key, once."""
    with _read_only_session() as db:  # an account and a key hold no vault secret
        issued = accounts.create_account(db, name)
    _print_first_key(issued, as_json=as_json)


@account_cli.command("list")
def account_list() -> None:
    """Every account: id, name, created (tab-separated when not printed to a terminal)."""
    found: list[list[str]] = []
    with _read_only_session() as db:
        cursor: str | None = None
        while True:
            rows, cursor = accounts.list_accounts(db, limit=200, cursor=cursor)
            found += [[a.id, a.name, _when(a.created_at)] for a in rows]
            if cursor is None:
                break
    _print_rows("accounts", ["id", "name", "created"], found)


@keys_cli.command("create")
def keys_create(
    account_id: Annotated[str, typer.Option("--account", help="The account the key is for")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help='Print {"id", "account_id", "key"}')] = False,
) -> None:
    """Issue an API key for an account; the key is printed once. Exits 1 for an unknown account or at the
    account's key limit."""
    with _read_only_session() as db:
        issued = accounts.issue_api_key(db, account_id, name)
    if as_json:
        _echo(json.dumps({"id": issued.key_id, "account_id": issued.account_id, "key": issued.secret}))
        return
    _echo(f"Created API key {issued.key_id} for account {issued.account_id}.")
    _echo(f"API key (shown once, keep it safe): {issued.secret}")


@keys_cli.command("list")
def keys_list(account_id: Annotated[str, typer.Option("--account", help="Whose keys")]) -> None:
    """An account's live API keys: id, name, prefix, created, last used (never the keys themselves)."""
    found: list[list[str]] = []
    with _read_only_session() as db:
        accounts.get_account(db, account_id)
        cursor: str | None = None
        while True:
            rows, cursor = accounts.list_api_keys(db, account_id, limit=200, cursor=cursor)
            found += [[k.id, k.name, k.prefix, _when(k.created_at), _when(k.last_used_at)] for k in rows]
            if cursor is None:
                break
    _print_rows(f"API keys of {account_id}", ["id", "name", "prefix", "created", "last_used"], found)


@keys_cli.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key at once (its next request answers 401). The operator may revoke an account's last key.
    Exits 1 for an unknown id."""
    with _read_only_session() as db:
        key = accounts.revoke_api_key(db, key_id)
    _echo(f"API key {key.id} of account {key.account_id} revoked")


# --- deployment status ---------------------------------------------------------------------


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON")] = False) -> None:
    """The deployment at a glance: accounts, mailboxes by status, active connections by platform, queue depth
    (pending and held deliveries), dead letters, paused mailboxes. Needs no vault key."""
    with _read_only_session() as db:
        found = deployment_status(db)
    if as_json:
        _echo(json.dumps(dataclasses.asdict(found)))
        return
    _echo(f"accounts:      {found.accounts}")
    _echo("mailboxes:     " + ", ".join(f"{n} {state}" for state, n in found.mailboxes.items()))
    platforms = ", ".join(f"{n} {platform}" for platform, n in found.connections.items()) or "none"
    _echo(f"connections:   {platforms}")
    _echo(f"queue depth:   {found.queue_depth}")
    _echo(f"dead letters:  {found.dead_letters}")
    _echo(f"paused:        {', '.join(found.paused_mailboxes) or 'none'}")


# --- doctor ------------------------------------------------------------------------------


@app.command()
def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"ok", "checks": [{what, status, detail, fix}]}')
    ] = False,
    dev: Annotated[bool, typer.Option("--dev", help="Read settings with `chatbox dev`'s defaults")] = False,
) -> None:
    """Check the deployment: settings, database, migrations, the queue, the vault key against every credential,
    each active connection against its platform, each mailbox's webhook URL. One line per check (ok / warn /
    fail, and what to do); exits 0 when nothing fails, 1 otherwise."""
    try:
        settings = _settings(dev=dev)
    except typer.Exit:  # the reason is printed already; the doctor still reports in its own form
        results = [ProbeResult("settings", "fail", "invalid or incomplete (see above)", "fix what the error names")]
    else:
        _configure_logging(settings)
        results = doctor_results(settings)
    failed = any(result.status == "fail" for result in results)
    if as_json:
        _echo(json.dumps({"ok": not failed, "checks": [dataclasses.asdict(result) for result in results]}))
    else:
        for result in results:
            line = f"{result.status:<4} {result.what}: {result.detail}"
            _echo(redact(line + (f" -> {result.fix}" if result.fix else "")))
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app()
