"""Rows to public shapes. Secrets and hashes never leave through here."""

from __future__ import annotations

from sqlalchemy.orm import object_session

from chatbox.domain.schemas import (
    ApiKeyPublic,
    ChatPublic,
    ConnectionPublic,
    ConnectionStatus,
    CredentialKind,
    CredentialPublic,
    EventSubscriptionPublic,
    EventType,
    MailboxPublic,
    MailboxStatus,
)
from chatbox.domain.settings import Settings
from chatbox.runtime import Runtime
from chatbox.services.connections import ingest_path
from chatbox.services.focus import ChatSummary
from chatbox.store.models import ApiKey, Chat, Connection, Credential, EventSubscription, Mailbox


def _focal_address(mailbox: Mailbox) -> str | None:
    """The focal chat as agents name it (`telegram:123`), the id GET /v1/mailboxes/{id}/chats and list_chats show."""
    db = object_session(mailbox)
    if mailbox.focal_chat_id is None or db is None:
        return None
    chat = db.get(Chat, mailbox.focal_chat_id)
    return chat.address if chat is not None else None


def mailbox_public(mailbox: Mailbox, settings: Settings) -> MailboxPublic:
    return MailboxPublic(
        id=mailbox.id,
        name=mailbox.name,
        webhook_url=mailbox.webhook_url,
        templates=mailbox.templates,
        recap_messages=mailbox.recap_messages,
        focal_chat_id=_focal_address(mailbox),
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


def api_key_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id, name=key.name, prefix=key.prefix, created_at=key.created_at, last_used_at=key.last_used_at
    )


def event_subscription_public(subscription: EventSubscription) -> EventSubscriptionPublic:
    return EventSubscriptionPublic(
        id=subscription.id,
        url=subscription.url,
        events=[EventType(e) for e in subscription.events],
        signing_credential_id=subscription.signing_credential_id,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def chat_public(chat: ChatSummary) -> ChatPublic:
    return ChatPublic(
        id=chat.id,
        name=chat.name,
        type=chat.type,
        platform=chat.platform,
        unread=chat.unread,
        muted=chat.muted,
        focal=chat.focal,
        last_activity_at=chat.last_message_at,
    )
