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


TARGET_QUOTE = 120


def _target(db: Session, chat: Chat, message: Message) -> Message | None:
    if message.target_external_id is None:
        return None
    return db.scalar(
        select(Message)
        .where(Message.chat_id == chat.id, Message.external_id == message.target_external_id, Message.id != message.id)
        .order_by(Message.id)
        .limit(1)
    )


def _quote(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= TARGET_QUOTE else flat[: TARGET_QUOTE - 1] + "…"


def target_words(target: Message | None, event: Message) -> str:
    """The message an event concerns, as a model reads it best: whose it is and what it said (for an edit, what it
    said before)."""
    if target is None:
        return f"message {event.target_external_id}" if event.target_external_id else "a message"
    author = target.sender_name or target.sender_id
    if target.direction == "out":
        owner = "your message"
    elif target.sender_id is not None and target.sender_id == event.sender_id:
        owner = "their message"
    else:
        owner = f"{author}'s message" if author else "a message"
    quoted = _quote(event.previous_text if event.event_type == "edit" else target.text)
    return f'{owner} "{quoted}"' if quoted else owner


def reaction_words(reaction: dict[str, Any] | None) -> str:
    if not reaction:
        return "reacted to"
    emoji = reaction.get("emoji", "")
    return f"removed their {emoji} reaction from" if reaction.get("removed") else f"reacted {emoji} to"


def event_variables(db: Session, chat: Chat, message: Message) -> tuple[dict[str, str], Message | None]:
    """The variables of edit, delete and reaction events (empty for a plain message)."""
    target = _target(db, chat, message)
    variables = {
        "TARGET_MESSAGE_ID": target.id if target is not None else "",
        "TARGET_EXTERNAL_ID": message.target_external_id or "",
        "TARGET_TEXT": _quote(message.previous_text if message.event_type == "edit" else target.text)
        if target is not None
        else "",
        "TARGET": target_words(target, message),
        "EMOJI": str((message.reaction or {}).get("emoji", "")),
        "REACTION": reaction_words(message.reaction),
    }
    return variables, target


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
    events, target = event_variables(db, chat, message)
    variables.update(events)
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
        "target_external_id": message.target_external_id,
        "target_message_id": target.id if target is not None else None,
        "reaction": message.reaction,
        "edited_at": _iso(message.edited_at),
        "deleted_at": _iso(message.deleted_at),
    }
    return body
