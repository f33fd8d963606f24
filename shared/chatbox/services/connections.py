"""Connections: one platform attached to a mailbox, with its secrets sealed as credentials.

Webhook-mode platforms (telegram, slack) are set up with the platform when a connection is created
(`WebhookPlatform.provision`: check the credentials, register the webhook) and torn down when it is
archived (`deprovision`, best effort), when the caller passes the process's `WebhookRegistry`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.errors import ConflictError, ConnectorError, NotFoundError, VaultError
from chatbox.domain.ids import hash_token, is_valid_id, new_id, new_token
from chatbox.domain.schemas import ConnectionCreate, CredentialKind, MailboxStatus
from chatbox.domain.vault import Vault
from chatbox.ports.ingest import ProvisionRequest, WebhookConnection, WebhookRegistry
from chatbox.services.credentials import add_credential, reveal
from chatbox.services.mailboxes import get_mailbox
from chatbox.services.pagination import paginate
from chatbox.store.models import Connection, Credential

log = logging.getLogger(__name__)

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
    return _ingest_path(connection.platform, connection.id)


def _ingest_path(platform: str, connection_id: str) -> str:
    if platform in WEBHOOK_PLATFORMS:
        return f"/v1/ingest/{platform}/{connection_id}"
    return f"/v1/connections/{connection_id}/messages"


def create_connection(
    db: Session,
    vault: Vault,
    account_id: str,
    mailbox_id: str,
    data: ConnectionCreate,
    *,
    webhooks: WebhookRegistry | None = None,
    public_url: str = "",
) -> CreatedConnection:
    """Attach a platform to a mailbox. ConflictError when the mailbox already has an active one.

    With `webhooks` holding the platform, the connection is first provisioned with the platform
    (Telegram: getMe + setWebhook to `public_url` + its ingest path; Slack: auth.test), and what that
    returns is stored too: config merged, secrets sealed. Nothing is stored when provisioning fails.

    Raises:
        InvalidInputError: the platform refused the credentials or the ingest URL.
        ConnectorUnavailableError: the platform could not be reached.
    """
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
    config: dict[str, Any] = dict(data.config)
    secrets = dict(data.secrets)
    webhook = webhooks.get(platform) if webhooks is not None else None
    if webhook is not None:
        db.rollback()  # no transaction stays open across the platform's API calls
        provisioned = webhook.provision(
            ProvisionRequest(connection_id, config, secrets, public_url + _ingest_path(platform, connection_id))
        )
        config.update(provisioned.config)
        secrets.update(provisioned.secrets)
    refs = {
        name: add_credential(
            db, vault, account_id, f"{platform}:{connection_id}:{name}", CredentialKind.platform, value
        ).id
        for name, value in secrets.items()
    }
    token = new_token("inb")
    connection = Connection(
        id=connection_id,
        account_id=account_id,
        mailbox_id=mailbox.id,
        platform=platform,
        config=config,
        secret_refs=refs,
        inbound_token_hash=hash_token(token),
        status=ACTIVE,
    )
    db.add(connection)
    try:
        db.commit()
    except IntegrityError as exc:  # a concurrent create won the race for the partial unique index
        db.rollback()
        if webhook is not None:
            _deprovision_quietly(webhooks, WebhookConnection(connection_id, platform, config, secrets))
        raise ConflictError(f"mailbox {mailbox_id} already has an active {platform} connection") from exc
    return CreatedConnection(connection, token)


def open_connection_secrets(db: Session, vault: Vault, connection: Connection) -> dict[str, str]:
    """The connection's platform secrets by name, opened. Raises VaultError."""
    opened: dict[str, str] = {}
    for name, credential_id in connection.secret_refs.items():
        credential = db.get(Credential, credential_id)
        if credential is not None:
            opened[name] = reveal(vault, credential)
    return opened


def webhook_connection(db: Session, vault: Vault, connection: Connection) -> WebhookConnection:
    return WebhookConnection(
        connection.id, connection.platform, dict(connection.config), open_connection_secrets(db, vault, connection)
    )


def resync_connection(
    db: Session, vault: Vault, connection_id: str, *, webhooks: WebhookRegistry, public_url: str
) -> Connection:
    """Provision an active webhook-mode connection with its platform again (Telegram: a new setWebhook with
    a new secret token, to the current CHATBOX_PUBLIC_URL). ConflictError for an archived or container one."""
    connection = get_connection(db, None, connection_id)
    webhook = webhooks.get(connection.platform)
    if connection.status != ACTIVE or webhook is None:
        raise ConflictError(
            f"connection {connection_id} is {connection.status} on {connection.platform}; "
            "only active telegram and slack connections can be resynced"
        )
    secrets = open_connection_secrets(db, vault, connection)
    config = dict(connection.config)
    db.rollback()
    provisioned = webhook.provision(
        ProvisionRequest(connection.id, config, secrets, public_url + ingest_path(connection))
    )
    connection = get_connection(db, None, connection_id)
    refs = dict(connection.secret_refs)
    for name, value in provisioned.secrets.items():
        old = db.get(Credential, refs[name]) if name in refs else None
        refs[name] = add_credential(
            db,
            vault,
            connection.account_id,
            f"{connection.platform}:{connection.id}:{name}",
            CredentialKind.platform,
            value,
        ).id
        if old is not None:
            db.delete(old)
    connection.secret_refs = refs
    connection.config = {**connection.config, **provisioned.config}
    db.commit()
    return connection


def _deprovision_quietly(webhooks: WebhookRegistry | None, connection: WebhookConnection) -> None:
    webhook = webhooks.get(connection.platform) if webhooks is not None else None
    if webhook is None:
        return
    try:
        webhook.deprovision(connection)
    except ConnectorError as exc:
        log.warning("could not unregister %s connection %s: %s", connection.platform, connection.connection_id, exc)


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


def archive_connection(
    db: Session,
    account_id: str | None,
    connection_id: str,
    *,
    webhooks: WebhookRegistry | None = None,
    vault: Vault | None = None,
) -> Connection:
    """Archive a connection: its inbound token stops working and the platform slot frees up. Idempotent.

    With `webhooks` and `vault`, a webhook-mode platform is told too (Telegram: deleteWebhook), best
    effort: the archive stands even when the platform cannot be reached (ingest refuses it anyway).
    """
    connection = get_connection(db, account_id, connection_id)
    was_active = connection.status == ACTIVE
    connection.status = ARCHIVED
    db.commit()
    if was_active and vault is not None and webhooks is not None and webhooks.get(connection.platform) is not None:
        try:
            target = webhook_connection(db, vault, connection)
        except VaultError as exc:
            log.warning("could not open the secrets of connection %s to unregister it: %s", connection.id, exc)
        else:
            _deprovision_quietly(webhooks, target)
    return connection
