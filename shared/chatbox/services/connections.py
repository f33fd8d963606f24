"""Connections: one platform attached to a mailbox, with its secrets sealed as credentials.

What a platform needs at create comes from its registered spec (`chatbox.ports.platforms`). A
webhook-mode platform whose connector runs in this process is set up with the platform when a
connection is created (`WebhookConnector.provision`: check the credentials, register the webhook)
and torn down when it is archived (`deprovision`, best effort).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.addresses import AddressPolicy, check_url
from chatbox.domain.errors import (
    ConflictError,
    ConnectorError,
    ConnectorUnavailableError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    VaultError,
)
from chatbox.domain.ids import hash_token, is_valid_id, new_id, new_token
from chatbox.domain.schemas import ConnectionCreate, ConnectionStatus, ConnectionUpdate, CredentialKind, EventType
from chatbox.domain.vault import Vault
from chatbox.ports.connector import OUTBOUND_AUTH_SECRET, OUTBOUND_CREDENTIAL, OUTBOUND_URL, ConnectionContext
from chatbox.ports.ingest import ProvisionRequest
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.connector_programs import (
    MANAGED_CREDENTIALS,
    PortPicker,
    check_program_input,
    refuse_reserved_config,
    stage_managed_program,
    wants_managed_program,
)
from chatbox.services.credentials import add_credential, get_credential, reveal
from chatbox.services.events import record_event
from chatbox.services.mailboxes import get_mailbox, require_live_mailbox
from chatbox.services.pagination import paginate
from chatbox.services.quotas import DEFAULT_LIMITS, AccountLimits, require_credential_room
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Connection, Credential

log = logging.getLogger(__name__)

ACTIVE = ConnectionStatus.active
ARCHIVED = ConnectionStatus.archived


@dataclass(frozen=True)
class CreatedConnection:
    connection: Connection
    inbound_token: str


def ingest_path(platforms: PlatformRegistry, platform: str, connection_id: str) -> str:
    """Where the platform (webhook mode) or its connector program delivers inbound for this connection."""
    spec = platforms.get(platform)
    if spec is not None and spec.receives_webhooks:
        return f"/v1/ingest/{platform}/{connection_id}"
    return f"/v1/connections/{connection_id}/messages"


def create_connection(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    account_id: str,
    mailbox_id: str,
    data: ConnectionCreate,
    *,
    public_url: str = "",
    limits: AccountLimits = DEFAULT_LIMITS,
    policy: AddressPolicy | None = None,
    pick_program_port: PortPicker | None = None,
) -> CreatedConnection:
    """Attach a platform to a mailbox. ConflictError when the mailbox already has an active one.

    A `config.outbound_url` (where chatbox sends for a container platform) must pass `policy`, the
    connector address policy (`chatbox.runtime.connector_address_policy`; the strictest one when None).

    When this process runs the platform's webhook connector, the connection is first provisioned with
    the platform (Telegram: getMe + setWebhook to `public_url` + its ingest path; Slack: auth.test), and
    what that returns is stored too: config merged, secrets sealed. Nothing is stored when that fails.

    With `pick_program_port` (a runtime that runs connector programs: `chatbox dev`, `chatbox api`), a
    container platform's connection created without `config.outbound_url` is managed: chatbox seals what its
    program needs and runs it (`chatbox.services.connector_programs`).

    Raises:
        InvalidInputError: an unknown platform, a missing required secret or config key, the
            platform refused the credentials or the ingest URL, or the policy refused
            `config.outbound_url` (TargetRefusedError), or the config names a key only chatbox sets.
        ConnectorUnavailableError: the platform could not be reached.
        QuotaExceededError: the connection's secrets would take the account over `limits.max_credentials`
            (checked before the platform is called, and again with what it returned).
    """
    refuse_reserved_config(data.config)
    _check_outbound_url(db, data.config.get(OUTBOUND_URL), policy or AddressPolicy())
    mailbox = get_mailbox(db, account_id, mailbox_id)
    require_live_mailbox(mailbox)
    spec = platforms.spec(data.platform)
    platform = spec.name
    existing = db.scalar(
        select(Connection.id).where(
            Connection.mailbox_id == mailbox.id, Connection.platform == platform, Connection.status == ACTIVE
        )
    )
    if existing is not None:
        raise ConflictError(f"mailbox {mailbox_id} already has an active {platform} connection ({existing})")
    spec.check_connection_input(data.config, data.secrets)
    managed = wants_managed_program(spec, data.config, pick_program_port)
    if managed:
        check_program_input(spec, data.config, data.secrets)
    extra_credentials = MANAGED_CREDENTIALS if managed else 0
    require_credential_room(db, account_id, len(data.secrets) + extra_credentials, limits)
    connection_id = new_id("connection")
    config: dict[str, Any] = dict(data.config)
    secrets = dict(data.secrets)
    webhook = platforms.webhook(platform)
    if webhook is not None:
        release_before_network_call(db)
        provisioned = webhook.provision(
            ProvisionRequest(
                connection_id, config, secrets, public_url + ingest_path(platforms, platform, connection_id)
            )
        )
        config.update(provisioned.config)
        secrets.update(provisioned.secrets)
        try:
            require_credential_room(db, account_id, len(secrets), limits)
        except QuotaExceededError:
            _deprovision_quietly(platforms, ConnectionContext(connection_id, platform, config, secrets))
            raise
    refs = {
        name: add_credential(
            db, vault, account_id, f"{platform}:{connection_id}:{name}", CredentialKind.platform, value
        ).id
        for name, value in secrets.items()
    }
    token = new_token("inb")
    if managed and pick_program_port is not None:
        config.update(
            stage_managed_program(
                db,
                vault,
                account_id=account_id,
                platform=platform,
                connection_id=connection_id,
                inbound_token=token,
                pick_port=pick_program_port,
            )
        )
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
            _deprovision_quietly(platforms, ConnectionContext(connection_id, platform, config, secrets))
        raise ConflictError(f"mailbox {mailbox_id} already has an active {platform} connection") from exc
    return CreatedConnection(connection, token)


def _check_outbound_url(db: Session, url: Any, policy: AddressPolicy) -> None:
    """It may resolve the host name: it runs before anything is written, and no transaction waits on DNS."""
    if url is None:
        return
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"config.{OUTBOUND_URL} must be the connector's http:// or https:// send URL")
    release_before_network_call(db)
    check_url(url, policy, field=f"config.{OUTBOUND_URL}")


def open_connection_secrets(db: Session, vault: Vault, connection: Connection) -> dict[str, str]:
    """The connection's platform secrets by name, opened, plus the outbound credential of a container
    connection under `outbound_auth` (see `connectors/CONTRACT.md`).

    Raises:
        VaultError: a secret cannot be opened with the configured keys.
        ConnectorUnavailableError: `config.outbound_credential_id` names no mcp_proxy_auth credential.
    """
    opened: dict[str, str] = {}
    for name, credential_id in connection.secret_refs.items():
        credential = db.get(Credential, credential_id)
        if credential is not None:
            opened[name] = reveal(vault, credential)
    credential_ref = connection.config.get(OUTBOUND_CREDENTIAL)
    if isinstance(credential_ref, str) and credential_ref:
        try:
            outbound = get_credential(db, connection.account_id, credential_ref)
        except NotFoundError as exc:
            raise ConnectorUnavailableError(
                f"config.{OUTBOUND_CREDENTIAL} of connection {connection.id} names no credential of this account"
            ) from exc
        if outbound.kind != CredentialKind.mcp_proxy_auth.value:
            raise ConnectorUnavailableError(
                f"config.{OUTBOUND_CREDENTIAL} of connection {connection.id} must be an mcp_proxy_auth credential"
            )
        opened[OUTBOUND_AUTH_SECRET] = reveal(vault, outbound)
    return opened


def connection_context(db: Session, vault: Vault, connection: Connection) -> ConnectionContext:
    """The connection as its connector sees it, secrets opened (see `open_connection_secrets` for errors)."""
    return ConnectionContext(
        connection.id, connection.platform, dict(connection.config), open_connection_secrets(db, vault, connection)
    )


def resync_connection(
    db: Session, vault: Vault, platforms: PlatformRegistry, connection_id: str, *, public_url: str
) -> Connection:
    """Provision an active webhook-mode connection with its platform again (Telegram: a new setWebhook with
    a new secret token, to the current CHATBOX_PUBLIC_URL). ConflictError for an archived or container one."""
    connection = get_connection(db, None, connection_id)
    webhook = platforms.webhook(connection.platform)
    if connection.status != ACTIVE or webhook is None:
        served = ", ".join(s.name for s in platforms.specs() if platforms.webhook(s.name) is not None) or "none"
        raise ConflictError(
            f"connection {connection_id} is {connection.status} on {connection.platform}; only active connections "
            f"of webhook platforms can be resynced (here: {served})"
        )
    secrets = open_connection_secrets(db, vault, connection)
    config = dict(connection.config)
    release_before_network_call(db)
    try:
        provisioned = webhook.provision(
            ProvisionRequest(
                connection.id, config, secrets, public_url + ingest_path(platforms, connection.platform, connection.id)
            )
        )
    except (InvalidInputError, ConnectorUnavailableError) as exc:
        # The live connection's own token refused (or the platform unreachable): integrators hear of it.
        report_connection_error(db, connection, exc.message)
        raise
    connection = get_connection(db, None, connection_id)
    _replace_secrets(db, vault, connection, dict(provisioned.secrets))
    connection.config = {**connection.config, **provisioned.config}
    db.commit()
    return connection


def update_connection(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    account_id: str,
    connection_id: str,
    data: ConnectionUpdate,
    *,
    public_url: str = "",
    limits: AccountLimits = DEFAULT_LIMITS,
    policy: AddressPolicy | None = None,
) -> Connection:
    """Change a live connection in place: `data.config` keys are merged into its config, each of `data.secrets`
    replaces the secret of that name. Its id, chats, history and the mailbox's focus stay.

    A webhook-mode platform served here is provisioned again with the result first (Telegram: getMe and
    setWebhook with the new bot token; Slack: auth.test), and nothing changes unless the platform takes it.

    Raises:
        NotFoundError: no such connection of this account.
        ConflictError: the connection is archived.
        InvalidInputError: a refused `config.outbound_url`, a required key removed, or the platform refused
            the new credentials (the connection is left exactly as it was).
        ConnectorUnavailableError: the platform could not be reached (nothing changed).
        QuotaExceededError: new secret names would take the account over `limits.max_credentials`.
    """
    if OUTBOUND_URL in data.config:
        _check_outbound_url(db, data.config.get(OUTBOUND_URL), policy or AddressPolicy())
    connection = get_connection(db, account_id, connection_id)
    if connection.status != ACTIVE:
        raise ConflictError(f"connection {connection_id} is archived; create a new connection instead")
    spec = platforms.spec(connection.platform)
    config: dict[str, Any] = {**connection.config, **data.config}
    secrets = {**open_connection_secrets(db, vault, connection), **data.secrets}
    secrets.pop(OUTBOUND_AUTH_SECRET, None)  # opened from config.outbound_credential_id, not one of its own
    spec.check_connection_input(config, secrets)
    require_credential_room(db, connection.account_id, len(set(data.secrets) - set(connection.secret_refs)), limits)
    webhook = platforms.webhook(connection.platform)
    if webhook is not None:
        release_before_network_call(db)
        provisioned = webhook.provision(
            ProvisionRequest(
                connection.id, config, secrets, public_url + ingest_path(platforms, connection.platform, connection.id)
            )
        )
        config.update(provisioned.config)
        changed = {**data.secrets, **provisioned.secrets}
        connection = get_connection(db, account_id, connection_id)
    else:
        changed = dict(data.secrets)
    _replace_secrets(db, vault, connection, changed)
    connection.config = config
    db.commit()
    return connection


def _replace_secrets(db: Session, vault: Vault, connection: Connection, changed: dict[str, str]) -> None:
    refs = dict(connection.secret_refs)
    for name, value in changed.items():
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


def rotate_inbound_token(db: Session, account_id: str | None, connection_id: str) -> str:
    """Give an active connection a new inbound token, returned once; the old one stops working at once.

    Raises:
        NotFoundError: no such connection (of this account).
        ConflictError: the connection is archived.
    """
    connection = get_connection(db, account_id, connection_id)
    if connection.status != ACTIVE:
        raise ConflictError(f"connection {connection_id} is archived; its inbound token cannot be rotated")
    token = new_token("inb")
    connection.inbound_token_hash = hash_token(token)
    db.commit()
    return token


def report_connection_error(db: Session, connection: Connection, error: str) -> None:
    """Tell the account's integrators that a connection is not working (`connection_error`): a platform refused
    its token, or its connector cannot be reached or is unhealthy. Commits; nothing else may be pending."""
    db.rollback()
    record_event(
        db,
        connection.account_id,
        EventType.connection_error,
        mailbox_id=connection.mailbox_id,
        data={"connection_id": connection.id, "platform": connection.platform, "error": error},
    )
    db.commit()


def _deprovision_quietly(platforms: PlatformRegistry, connection: ConnectionContext) -> None:
    webhook = platforms.webhook(connection.platform)
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
        raise NotFoundError("connection not found: unknown id")
    return connection


def list_connections(
    db: Session, account_id: str | None, mailbox_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Connection], str | None]:
    if account_id is not None:
        get_mailbox(db, account_id, mailbox_id)
    stmt = select(Connection).where(Connection.mailbox_id == mailbox_id)
    return paginate(db, stmt, Connection.id, kind="connection", limit=limit, cursor=cursor)


def archive_connection(
    db: Session, vault: Vault, platforms: PlatformRegistry, account_id: str | None, connection_id: str
) -> Connection:
    """Archive a connection: its inbound token stops working and the platform slot frees up. Idempotent.

    A webhook-mode platform whose connector runs here is told too (Telegram: deleteWebhook), best
    effort: the archive stands even when the platform cannot be reached (ingest refuses it anyway).
    """
    connection = get_connection(db, account_id, connection_id)
    was_active = connection.status == ACTIVE
    connection.status = ARCHIVED
    db.commit()
    if was_active and platforms.webhook(connection.platform) is not None:
        try:
            target = connection_context(db, vault, connection)
        except (VaultError, ConnectorUnavailableError) as exc:
            log.warning("could not open the secrets of connection %s to unregister it: %s", connection.id, exc)
        else:
            _deprovision_quietly(platforms, target)
    return connection
