"""Sending as the agent: through the chat's connector, then stored as an outbound message.

The outbound message is stored only after the platform accepted it, so recaps show exactly what
the other side received. A send the platform refused stores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.errors import ConflictError, ConnectorUnavailableError, InvalidInputError, NoFocusError
from chatbox.domain.ids import new_id
from chatbox.domain.normalized import MAX_TEXT
from chatbox.domain.schemas import ConnectionStatus
from chatbox.domain.vault import Vault
from chatbox.ports.connector import OutboundMessage
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.connections import connection_context, report_connection_error
from chatbox.services.focus import find_chat
from chatbox.services.mailboxes import get_mailbox_any_account, require_live_mailbox
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Chat, Connection, Mailbox, Message
from chatbox.store.types import utcnow


@dataclass(frozen=True)
class SendReceipt:
    """A send that went out and was recorded."""

    message_id: str  # chatbox's id of the stored outbound message
    external_id: str  # the platform's id of the sent message
    chat_id: str  # the chat address


def _target_chat(db: Session, mailbox: Mailbox, address: str | None) -> Chat:
    if address is not None:
        return find_chat(db, mailbox.id, address)
    if mailbox.focal_chat_id is None:
        raise NoFocusError("no focal chat: pass chat_id, or call switch_chat first (list_chats shows the chat ids)")
    chat = db.get(Chat, mailbox.focal_chat_id)
    if chat is None:
        raise NoFocusError("the focal chat no longer exists: call list_chats and switch_chat")
    return chat


def _carrying_connection(db: Session, mailbox: Mailbox, chat: Chat) -> Connection:
    """The connection to send to `chat` on: its own, or, when that was archived, the mailbox's active connection
    of the same platform (the chat follows it once a send through it succeeded)."""
    connection = db.get(Connection, chat.connection_id)
    if connection is not None and connection.status == ConnectionStatus.active:
        return connection
    successor = db.scalar(
        select(Connection).where(
            Connection.mailbox_id == mailbox.id,
            Connection.platform == chat.platform,
            Connection.status == ConnectionStatus.active,
        )
    )
    if successor is None:
        raise ConflictError(
            f"the {chat.platform} connection of {chat.address} is archived and the mailbox has no active "
            f"{chat.platform} connection; this chat can no longer be answered from this mailbox"
        )
    return successor


def send_message(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    mailbox_id: str,
    text: str,
    *,
    chat: str | None = None,
    reply_to: str | None = None,
    platform: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> SendReceipt:
    """Send `text` to the chat at address `chat` (default: the focal chat) and store it as outbound.

    `platform`, when given, requires the chat to be on that platform (the `<platform>_send` tools).
    `options` are platform options passed to the connector as they are.

    Raises:
        NoFocusError: no `chat` given and no focal chat.
        InvalidInputError / NotFoundError: an empty text, a malformed or unknown chat, a platform mismatch.
        ConflictError: the mailbox is archived, or the chat's connection is and no active one of its platform
            replaced it.
        ConnectorUnavailableError, PlatformRefusedError, RateLimitedError: from the connector.
    """
    if not text.strip():
        raise InvalidInputError("text is empty: write the message to send")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(f"text is longer than {MAX_TEXT} characters; split it into several messages")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target_chat = _target_chat(db, mailbox, chat)
    if platform is not None and target_chat.platform != platform:
        raise InvalidInputError(
            f"{target_chat.address} is a {target_chat.platform} chat; use {target_chat.platform}_send or send_message"
        )
    connection = _carrying_connection(db, mailbox, target_chat)
    connector = platforms.connector(target_chat.platform)
    ctx = connection_context(db, vault, connection)
    # Nothing is written before the platform answers, so recaps show only what the other side received.
    release_before_network_call(db)
    try:
        sent = connector.send(ctx, OutboundMessage(target_chat.external_id, text, reply_to, dict(options or {})))
    except ConnectorUnavailableError as exc:
        # The token refused or the connector down: integrators hear of it (`connection_error`), the agent from
        # the error itself.
        report_connection_error(db, connection, exc.message)
        raise
    external_id = sent.external_id
    now = utcnow()
    message = Message(
        id=new_id("message"),
        chat_id=target_chat.id,
        connection_id=connection.id,
        direction="out",
        external_id=external_id,
        sender_id=None,
        sender_name=mailbox.name,
        text=text,
        attachments=[],
        reply_to_external_id=reply_to,
        event_type="message",
        sent_at=now,
        received_at=now,
    )
    db.add(message)
    target_chat.last_activity_at = now
    target_chat.connection_id = connection.id
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            f"the platform reported message id {external_id}, which this connection already used; "
            "the message was sent but not recorded"
        ) from exc
    return SendReceipt(message_id=message.id, external_id=external_id, chat_id=target_chat.address)
