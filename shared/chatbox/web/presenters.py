"""Rows to public shapes. Secrets and hashes never leave through here."""

from __future__ import annotations

from chatbox.domain.schemas import (
    ConnectionPublic,
    ConnectionStatus,
    CredentialKind,
    CredentialPublic,
    MailboxPublic,
    MailboxStatus,
)
from chatbox.domain.settings import Settings
from chatbox.runtime import Runtime
from chatbox.services.connections import ingest_path
from chatbox.store.models import Connection, Credential, Mailbox


def mailbox_public(mailbox: Mailbox, settings: Settings) -> MailboxPublic:
    return MailboxPublic(
        id=mailbox.id,
        name=mailbox.name,
        webhook_url=mailbox.webhook_url,
        templates=mailbox.templates,
        recap_messages=mailbox.recap_messages,
        focal_chat_id=mailbox.focal_chat_id,
        signing_credential_id=mailbox.signing_credential_id,
        webhook_auth_credential_id=mailbox.webhook_auth_credential_id,
        status=MailboxStatus(mailbox.status),
        mcp_url=settings.mcp_url(mailbox.id),
        created_at=mailbox.created_at,
        updated_at=mailbox.updated_at,
    )


def connection_public(connection: Connection, runtime: Runtime) -> ConnectionPublic:
    return ConnectionPublic(
        id=connection.id,
        mailbox_id=connection.mailbox_id,
        platform=connection.platform,
        config=connection.config,
        secret_names=sorted(connection.secret_refs),
        status=ConnectionStatus(connection.status),
        ingest_url=runtime.settings.public_url + ingest_path(runtime.platforms, connection.platform, connection.id),
        created_at=connection.created_at,
        updated_at=connection.updated_at,
    )


def credential_public(credential: Credential) -> CredentialPublic:
    return CredentialPublic(
        id=credential.id,
        name=credential.name,
        kind=CredentialKind(credential.kind),
        created_at=credential.created_at,
        updated_at=credential.updated_at,
    )
