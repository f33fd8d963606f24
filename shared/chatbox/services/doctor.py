"""`chatbox doctor`'s checks: each returns result lines (ok / warn / fail, with what to do), never raises for what
it finds. The composition root (the CLI) runs them in order and skips those whose prerequisite failed."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from chatbox.domain.addresses import AddressPolicy, check_url
from chatbox.domain.errors import ChatboxError
from chatbox.domain.schemas import ConnectionStatus, MailboxStatus
from chatbox.domain.vault import Vault
from chatbox.ports.platforms import PlatformRegistry
from chatbox.ports.probe import ProbeResult, QueueProbe, probe_of
from chatbox.ports.queue import DeliveryQueue
from chatbox.services.connections import connection_context, ingest_path
from chatbox.services.credentials import reveal
from chatbox.store.database import Database
from chatbox.store.models import Connection, Credential, Mailbox
from chatbox.store.schema_version import SCHEMA_HEAD, database_revision


def check_database(database: Database) -> list[ProbeResult]:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return [ProbeResult("database", "fail", f"unreachable: {first_line}", "check CHATBOX_DB_URL and the server")]
    return [ProbeResult("database", "ok", f"reachable ({database.engine.dialect.name})")]


def check_migrations(database: Database) -> list[ProbeResult]:
    # The head as the code records it (held to the revision scripts by a test): alembic stays unloaded.
    with database.engine.connect() as connection:
        current, head = database_revision(connection), SCHEMA_HEAD
    if current == head:
        return [ProbeResult("migrations", "ok", f"at head ({head})")]
    return [ProbeResult("migrations", "fail", f"at {current or 'none'}, head is {head}", "run `chatbox migrate`")]


def check_queue(queue: DeliveryQueue) -> list[ProbeResult]:
    if isinstance(queue, QueueProbe):
        return queue.check_reachable()
    return [ProbeResult("queue", "ok", "kept in the database")]


def check_credentials(db: Session, vault: Vault) -> list[ProbeResult]:
    """The vault key opens every credential (connection secrets and account credentials alike)."""
    opened, refused = 0, []
    for credential in db.scalars(select(Credential).order_by(Credential.id)):
        try:
            reveal(vault, credential)
            opened += 1
        except ChatboxError as exc:
            refused.append(ProbeResult(f"credential {credential.id}", "fail", exc.message, _VAULT_FIX))
    return refused or [ProbeResult("vault", "ok", f"the key opens all {opened} credential(s)")]


_VAULT_FIX = "set CHATBOX_VAULT_KEY to the key that sealed it (or list that key in CHATBOX_VAULT_OLD_KEYS)"


def check_connections(db: Session, vault: Vault, platforms: PlatformRegistry, *, public_url: str) -> list[ProbeResult]:
    """Each active connection probed by its platform's connector (`chatbox.ports.probe`)."""
    results: list[ProbeResult] = []
    active = db.scalars(
        select(Connection).where(Connection.status == ConnectionStatus.active.value).order_by(Connection.id)
    )
    for connection in active:
        name = f"connection {connection.id} ({connection.platform})"
        try:
            ctx = connection_context(db, vault, connection)
            connector = platforms.connector(connection.platform)
            ingest_url = public_url + ingest_path(platforms, connection.platform, connection.id)
        except ChatboxError as exc:
            results.append(ProbeResult(name, "fail", exc.message, "fix the cause above, or archive the connection"))
            continue
        probe = probe_of(connector)
        if probe is None:
            results.append(ProbeResult(name, "warn", "its platform has no probe", "send a test message"))
            continue
        results += [
            ProbeResult(f"{name}: {found.what}", found.status, found.detail, found.fix)
            for found in probe.check(ctx, ingest_url=ingest_url)
        ]
    return results


def check_mailbox_urls(db: Session, policy: AddressPolicy) -> list[ProbeResult]:
    """Each live mailbox's webhook URL is one the address policy allows (a setting may have changed since)."""
    results: list[ProbeResult] = []
    live = db.scalars(select(Mailbox).where(Mailbox.status != MailboxStatus.archived.value).order_by(Mailbox.id))
    for mailbox in live:
        name = f"mailbox {mailbox.id}"
        if not mailbox.webhook_url:
            results.append(
                ProbeResult(name, "warn", "no webhook_url: deliveries are held", "PATCH the mailbox's webhook_url")
            )
            continue
        try:
            check_url(mailbox.webhook_url, policy)
        except ChatboxError as exc:
            fix = "PATCH the mailbox's webhook_url, or allow it (CHATBOX_ALLOW_PRIVATE_WEBHOOKS / _LOOPBACK_)"
            results.append(ProbeResult(name, "fail", exc.message, fix))
            continue
        results.append(ProbeResult(name, "ok", "webhook URL allowed"))
    return results
