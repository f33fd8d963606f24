"""The webhook body an agent receives: a stored message rendered through its mailbox's templates.

Read inside the delivery attempt's session, so the chat list and unread count are those at the
moment of the POST, not of the inbound message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatbox.domain.attachments import LinkSigner, present_attachments
from chatbox.domain.rendering import ChatLine, render, render_chat_list
from chatbox.store.models import Chat, Delivery, Mailbox, Message

CHAT_LIST_LIMIT = 50


def _attachment_line(attachment: dict[str, Any]) -> str:
    label = " ".join(str(part) for part in (attachment["kind"], attachment.get("name"), attachment["id"]) if part)
    return f"\n[{label}]"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def chat_lines(db: Session, mailbox: Mailbox) -> list[ChatLine]:
    """The mailbox's chats, most recently active first, for $CHAT_LIST."""
    chats = db.scalars(
        select(Chat)
        .where(Chat.mailbox_id == mailbox.id)
        .order_by(Chat.last_activity_at.desc(), Chat.id)
        .limit(CHAT_LIST_LIMIT)
    )
    return [
        ChatLine(c.address, c.name, c.unread_count, c.id == mailbox.focal_chat_id, c.muted)
        for c in chats
        if not c.muted or c.id == mailbox.focal_chat_id
    ]


def build_webhook_body(
    db: Session,
    mailbox: Mailbox,
    chat: Chat,
    message: Message,
    delivery: Delivery,
    *,
    links: LinkSigner | None = None,
) -> dict[str, Any]:
    """The webhook JSON: type, delivery id, mailbox, chat, focal flag, rendered content, structured message.

    `links` signs each attachment's chatbox url (`chatbox.domain.attachments`); without it attachments carry none.
    """
    focal = mailbox.focal_chat_id == chat.id
    timestamp = message.sent_at or message.received_at
    shown_attachments = present_attachments(message.id, message.attachments, links)
    attachments = "".join(_attachment_line(a) for a in shown_attachments)
    variables = {
        "TEXT": message.text or "",
        "SENDER_NAME": message.sender_name or message.sender_id or "someone",
        "SENDER_ID": message.sender_id or "",
        "CHAT_ID": chat.address,
        "CHAT_NAME": chat.name or chat.address,
        "CHAT_TYPE": chat.type,
        "PLATFORM": chat.platform,
        "TIMESTAMP": timestamp.isoformat(),
        "UNREAD": str(chat.unread_count),
        "CHAT_LIST": render_chat_list(chat_lines(db, mailbox)),
        "EVENT_TYPE": message.event_type,
        "MESSAGE_ID": message.id,
        "EXTERNAL_MESSAGE_ID": message.external_id or "",
        "REPLY_TO": message.reply_to_external_id or "",
        "ATTACHMENTS": attachments,
        "MAILBOX_NAME": mailbox.name,
    }
    rendered = render(mailbox.templates, focal=focal, event_type=message.event_type, variables=variables)
    body: dict[str, Any] = {
        "type": message.event_type,
        "id": delivery.id,
        "mailbox_id": mailbox.id,
        "chat_id": chat.address,
        "platform": chat.platform,
        "focal": focal,
        "content": rendered.content,
    }
    if rendered.ephemeral is not None:
        body["ephemeral"] = rendered.ephemeral
    body["message"] = {
        "id": message.id,
        "external_id": message.external_id,
        "chat_id": chat.address,
        "chat_name": chat.name,
        "chat_type": chat.type,
        "sender_id": message.sender_id,
        "sender_name": message.sender_name,
        "text": message.text,
        "attachments": shown_attachments,
        "reply_to_external_id": message.reply_to_external_id,
        "event_type": message.event_type,
        "sent_at": _iso(message.sent_at),
        "received_at": _iso(message.received_at),
    }
    return body
