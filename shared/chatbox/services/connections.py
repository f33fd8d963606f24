"""Connections: one platform attached to a mailbox, with its secrets sealed as credentials."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.errors import ConflictError, NotFoundError
from chatbox.ids import hash_token, is_valid_id, new_id, new_token
from chatbox.schemas import ConnectionCreate, CredentialKind, MailboxStatus
from chatbox.services.credentials import add_credential
from chatbox.services.mailboxes import get_mailbox
from chatbox.services.pagination import paginate
from chatbox.store.models import Connection
from chatbox.vault import Vault

ACTIVE = "active"
ARCHIVED = "archived"

# Platforms that push webhooks to a platform-specific ingest route; the others are container
# connectors that post normalized messages to the generic inbound route.
WEBHOOK_PLATFORMS = frozenset({"telegram", "slack"})


@dataclass(frozen=True)
class CreatedConnection:
    connection: Connection
    inbound_token: str


def ingest_path(connection: Connection) -> str:
    """Where the platform (or its container connector) delivers inbound for this connection."""
    if connection.platform in WEBHOOK_PLATFORMS:
        return f"/v1/ingest/{connection.platform}/{connection.id}"
    return f"/v1/connections/{connection.id}/messages"


def create_connection(
    db: Session, vault: Vault, account_id: str, mailbox_id: str, data: ConnectionCreate
) -> CreatedConnection:
    """Attach a platform to a mailbox. ConflictError when the mailbox already has an active one."""
    mailbox = get_mailbox(db, account_id, mailbox_id)
    if mailbox.status == MailboxStatus.archived.value:
        raise ConflictError(f"mailbox {mailbox_id} is archived")
    platform = data.platform.value
    existing = db.scalar(
        select(Connection.id).where(
            Connection.mailbox_id == mailbox.id, Connection.platform == platform, Connection.status == ACTIVE
        )
    )
    if existing is not None:
        raise ConflictError(f"mailbox {mailbox_id} already has an active {platform} connection ({existing})")
    connection_id = new_id("connection")
    refs = {
        name: add_credential(
            db, vault, account_id, f"{platform}:{connection_id}:{name}", CredentialKind.platform, value
        ).id
        for name, value in data.secrets.items()
    }
    token = new_token("inb")
    connection = Connection(
        id=connection_id,
        account_id=account_id,
        mailbox_id=mailbox.id,
        platform=platform,
        config=dict(data.config),
        secret_refs=refs,
        inbound_token_hash=hash_token(token),
        status=ACTIVE,
    )
    db.add(connection)
    try:
        db.commit()
    except IntegrityError as exc:  # a concurrent create won the race for the partial unique index
        db.rollback()
        raise ConflictError(f"mailbox {mailbox_id} already has an active {platform} connection") from exc
    return CreatedConnection(connection, token)


def get_connection(db: Session, account_id: str | None, connection_id: str) -> Connection:
    """The connection, scoped to `account_id` unless None (operators)."""
    connection = db.get(Connection, connection_id) if is_valid_id("connection", connection_id) else None
    if connection is None or (account_id is not None and connection.account_id != account_id):
        raise NotFoundError(f"connection {connection_id} not found")
    return connection


def list_connections(
    db: Session, account_id: str | None, mailbox_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Connection], str | None]:
    if account_id is not None:
        get_mailbox(db, account_id, mailbox_id)
    stmt = select(Connection).where(Connection.mailbox_id == mailbox_id)
    return paginate(db, stmt, Connection.id, kind="connection", limit=limit, cursor=cursor)


def archive_connection(db: Session, account_id: str | None, connection_id: str) -> Connection:
    """Archive a connection: its inbound token stops working and the platform slot frees up. Idempotent."""
    connection = get_connection(db, account_id, connection_id)
    connection.status = ARCHIVED
    db.commit()
    return connection
