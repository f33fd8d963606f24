"""`chatbox` CLI: migrate, bootstrap, api, dev, operator and vault commands."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from chatbox.errors import ChatboxError
from chatbox.runtime import Runtime, build_runtime
from chatbox.services import accounts, connections, credentials, mailboxes
from chatbox.settings import Settings, get_settings
from chatbox.store.migrate import upgrade_to_head

app = typer.Typer(help="chatbox: messaging platforms behind one API for AI agents.", no_args_is_help=True)
operator = typer.Typer(help="Operator chores across all accounts.", no_args_is_help=True)
vault_cli = typer.Typer(help="Vault key management.", no_args_is_help=True)
app.add_typer(operator, name="operator")
app.add_typer(vault_cli, name="vault")

out = Console()
err = Console(stderr=True)


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextmanager
def _runtime(*, generate_vault_key: bool = False) -> Iterator[Runtime]:
    settings = get_settings()
    _configure_logging(settings)
    try:
        runtime = build_runtime(settings, generate_vault_key=generate_vault_key)
    except ChatboxError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    try:
        yield runtime
    except ChatboxError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        runtime.close()


def _print_first_key(issued: accounts.IssuedKey, *, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"account_id": issued.account_id, "api_key": issued.secret}))
        return
    out.print(f"Created account [bold]{issued.account_id}[/bold].")
    out.print(f"API key (shown once, keep it safe): [bold]{issued.secret}[/bold]", soft_wrap=True)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run repeatedly)."""
    with _runtime() as runtime:
        upgrade_to_head(runtime.db.engine)
        out.print("database is up to date")


@app.command()
def bootstrap(
    as_json: Annotated[bool, typer.Option("--json", help='Print {"account_id", "api_key"}')] = False,
    name: Annotated[str, typer.Option(help="Account name")] = "default",
) -> None:
    """Create the first account and its API key (printed once). Uses CHATBOX_BOOTSTRAP_API_KEY when set."""
    with _runtime() as runtime:
        upgrade_to_head(runtime.db.engine)
        with runtime.db.session() as db:
            issued = accounts.bootstrap(db, api_key=runtime.settings.bootstrap_api_key or None, name=name)
        if issued is None:
            err.print("an account already exists; nothing to do")
            raise typer.Exit(1)
        _print_first_key(issued, as_json=as_json)


@app.command()
def api() -> None:
    """Serve the REST API on CHATBOX_API_HOST:CHATBOX_API_PORT."""
    from chatbox.cli.serve import serve

    with _runtime() as runtime:
        serve(runtime)


@app.command()
def dev() -> None:
    """One process, zero set-up: home folder, vault key, migrations, first account, and every face served."""
    from chatbox.cli.serve import prepare_dev_home, serve

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    with _runtime(generate_vault_key=True) as runtime:
        issued = prepare_dev_home(runtime)
        if issued is not None:
            _print_first_key(issued, as_json=False)
        out.print(f"chatbox dev serving on {runtime.settings.public_url} (docs at {runtime.settings.public_url}/docs)")
        serve(runtime)


@operator.command("mailbox-list")
def mailbox_list(include_archived: Annotated[bool, typer.Option(help="Show archived mailboxes too")] = False) -> None:
    """Every mailbox of every account."""
    table = Table("id", "account", "name", "status", "webhook_url", title="mailboxes")
    with _runtime() as runtime, runtime.db.session() as db:
        cursor: str | None = None
        while True:
            rows, cursor = mailboxes.list_mailboxes(
                db, None, limit=200, cursor=cursor, include_archived=include_archived
            )
            for m in rows:
                table.add_row(m.id, m.account_id, m.name, m.status, m.webhook_url or "-")
            if cursor is None:
                break
    out.print(table)


@operator.command("connection-list")
def connection_list(mailbox_id: str) -> None:
    """The connections of one mailbox."""
    table = Table("id", "platform", "status", "secrets", "created", title=f"connections of {mailbox_id}")
    with _runtime() as runtime, runtime.db.session() as db:
        mailboxes.get_mailbox_any_account(db, mailbox_id)
        cursor: str | None = None
        while True:
            rows, cursor = connections.list_connections(db, None, mailbox_id, limit=200, cursor=cursor)
            for c in rows:
                table.add_row(
                    c.id, c.platform, c.status, ", ".join(sorted(c.secret_refs)) or "-", c.created_at.isoformat()
                )
            if cursor is None:
                break
    out.print(table)


@operator.command("connection-archive")
def connection_archive(connection_id: str) -> None:
    """Archive a connection: its inbound token stops working."""
    with _runtime() as runtime, runtime.db.session() as db:
        connection = connections.archive_connection(db, None, connection_id)
    out.print(f"connection {connection.id} archived")


@operator.command("mailbox-regenerate-mcp-token")
def mailbox_regenerate_mcp_token(mailbox_id: str) -> None:
    """Issue a new MCP token for a mailbox (printed once); the old one stops working."""
    with _runtime() as runtime, runtime.db.session() as db:
        token = mailboxes.regenerate_mcp_token(db, mailbox_id)
        url = runtime.settings.mcp_url(mailbox_id)
    out.print(f"MCP URL:   {url}")
    out.print(f"MCP token (shown once): [bold]{token}[/bold]", soft_wrap=True)


@vault_cli.command("rotate")
def vault_rotate() -> None:
    """Re-encrypt every credential under CHATBOX_VAULT_KEY (old keys stay readable via CHATBOX_VAULT_OLD_KEYS)."""
    with _runtime() as runtime, runtime.db.session() as db:
        count = credentials.rotate_all(db, runtime.vault)
    out.print(f"re-encrypted {count} credential(s) under key {runtime.vault.current_key_id}")


@vault_cli.command("generate-key")
def vault_generate_key() -> None:
    """Print a new random vault key (base64 of 32 bytes) for CHATBOX_VAULT_KEY."""
    from chatbox.vault import generate_key

    out.print(generate_key())


if __name__ == "__main__":
    app()
