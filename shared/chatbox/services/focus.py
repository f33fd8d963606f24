"""Focal attention: one chat at a time is the agent's focus.

Inbound on the focal chat is delivered in full (`focal_message`) and never counts as unread;
inbound anywhere else arrives as a `notification` carrying the chat list. These services are what
the MCP face (and any other face) calls: list the chats, switch focus, read history.

Chats are named by their address, `<platform>:<external_id>` (e.g. `telegram:-1001234`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbox.domain.attachments import LinkSigner, attachment_id, normal_kind, present_attachments
from chatbox.domain.errors import AuthenticationError, InvalidInputError, NotFoundError
from chatbox.domain.ids import is_valid_id, token_matches
from chatbox.domain.schemas import ConnectionStatus
from chatbox.services.mailboxes import get_mailbox_any_account
from chatbox.services.mailboxes import require_live_mailbox as require_live_mailbox  # re-exported for sending
from chatbox.store.models import Chat, Connection, Mailbox, Message

DEFAULT_RECAP = 20
MAX_PAGE = 100
PREVIEW_CHARS = 120
LIST_LIMIT = 200


@dataclass(frozen=True)
class ChatSummary:
    id: str
    name: str | None
    type: str
    platform: str
    unread: int
    muted: bool
    focal: bool
    last_message_preview: str | None
    last_message_at: datetime | None
    last_message_direction: str | None


@dataclass(frozen=True)
class MessageView:
    """One message as an agent reads it; `direction` is `in` (from the chat) or `out` (sent by the agent)."""

    id: str
    external_id: str | None
    direction: str
    sender: str
    text: str
    at: datetime
    reply_to: str | None
    # As `chatbox.domain.attachments.present_attachments` shows them: id, kind, mime_type, size, name, url.
    attachments: tuple[dict[str, Any], ...] = ()

    def line(self) -> str:
        """`[2026-11-26 16:20 UTC] Ada: hello` — the readable form used in recaps."""
        return f"[{self.at.strftime('%Y-%m-%d %H:%M UTC')}] {self.sender}: {self.text}"


@dataclass(frozen=True)
class ChatPage:
    chat: ChatSummary
    messages: list[MessageView]  # oldest first
    next_before: str | None  # pass as `before` for older messages; None when there are none


@dataclass(frozen=True)
class Focus:
    chat: ChatSummary | None
    recap: list[MessageView]


def authenticate_mailbox(db: Session, mailbox_id: str, presented: str) -> Mailbox:
    """The mailbox whose MCP token this is. AuthenticationError for any mismatch, whatever the reason."""
    mailbox = db.get(Mailbox, mailbox_id) if is_valid_id("mailbox", mailbox_id) else None
    if mailbox is None or not presented or not token_matches(presented, mailbox.mcp_token_hash):
        raise AuthenticationError("invalid MCP token for this mailbox")
    return mailbox


def active_platforms(db: Session, mailbox_id: str) -> list[str]:
    """The platforms this mailbox has an active connection on, sorted."""
    rows = db.scalars(
        select(Connection.platform).where(
            Connection.mailbox_id == mailbox_id, Connection.status == ConnectionStatus.active
        )
    )
    return sorted(set(rows))


def parse_chat_address(address: str) -> tuple[str, str]:
    """`telegram:123` -> (`telegram`, `123`). InvalidInputError when malformed (an unknown platform simply
    finds no chat)."""
    platform, sep, external_id = address.strip().partition(":")
    if not sep or not external_id:
        raise InvalidInputError("chat_id is malformed: use `<platform>:<external_id>` exactly as list_chats shows it")
    return platform, external_id


def find_chat(db: Session, mailbox_id: str, address: str) -> Chat:
    """The mailbox's chat at `address`. When an archived and an active connection both know it, the active wins."""
    platform, external_id = parse_chat_address(address)
    candidates = db.execute(
        select(Chat, Connection.status)
        .join(Connection, Connection.id == Chat.connection_id)
        .where(Chat.mailbox_id == mailbox_id, Chat.platform == platform, Chat.external_id == external_id)
        .order_by(Chat.id.desc())
    ).all()
    if not candidates:
        raise NotFoundError(
            "no chat of this mailbox has that chat_id; call list_chats for the ids of the chats it has "
            "(a chat appears once someone has written in it)"
        )
    active = [chat for chat, status in candidates if status == ConnectionStatus.active]
    return active[0] if active else candidates[0][0]


def _preview(message: Message | None) -> str | None:
    if message is None:
        return None
    text = _message_text(message)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _message_text(message: Message, *, with_ids: bool = False) -> str:
    parts = [message.text or ""]
    for index, attachment in enumerate(message.attachments):
        shown: tuple[Any, ...] = (attachment.get("kind", "file"), attachment.get("name"))
        if with_ids:  # read_attachment takes the id
            kind = normal_kind(attachment.get("kind"), attachment.get("mime_type"))
            shown = (kind, attachment.get("name"), attachment_id(message.id, index))
        label = " ".join(str(p) for p in shown if p)
        parts.append(f"[{label}]")
    if message.edited_at is not None:
        parts.append("(edited)")
    if message.deleted_at is not None:
        parts.insert(0, "(deleted)")
    if message.event_type != "message":
        concerns = f" of {message.target_external_id}" if message.target_external_id else ""
        parts.insert(0, f"({message.event_type}{concerns})")
    return " ".join(p for p in parts if p)


def _summary(chat: Chat, mailbox: Mailbox, last: Message | None) -> ChatSummary:
    return ChatSummary(
        id=chat.address,
        name=chat.name,
        type=chat.type,
        platform=chat.platform,
        unread=chat.unread_count,
        muted=chat.muted,
        focal=chat.id == mailbox.focal_chat_id,
        last_message_preview=_preview(last),
        last_message_at=(last.sent_at or last.received_at) if last else None,
        last_message_direction=last.direction if last else None,
    )


def _view(message: Message, mailbox: Mailbox, links: LinkSigner | None = None) -> MessageView:
    if message.direction == "out":
        sender = f"you ({mailbox.name})"
    else:
        sender = message.sender_name or message.sender_id or "someone"
    return MessageView(
        id=message.id,
        external_id=message.external_id,
        direction=message.direction,
        sender=sender,
        text=_message_text(message, with_ids=True),
        at=message.sent_at or message.received_at,
        reply_to=message.reply_to_external_id,
        attachments=tuple(present_attachments(message.id, message.attachments, links)),
    )


def _last_message(db: Session, chat_id: str) -> Message | None:
    return db.scalar(select(Message).where(Message.chat_id == chat_id).order_by(Message.id.desc()).limit(1))


def list_chats(
    db: Session, mailbox_id: str, *, platform: str | None = None, include_muted: bool = False
) -> list[ChatSummary]:
    """The mailbox's chats, most recently active first, each with its last message.

    Muted chats are left out unless `include_muted` (the focal chat is always listed).
    """
    mailbox = get_mailbox_any_account(db, mailbox_id)
    stmt = select(Chat).where(Chat.mailbox_id == mailbox.id)
    if platform is not None:
        stmt = stmt.where(Chat.platform == platform)
    chats = [
        chat
        for chat in db.scalars(stmt.order_by(Chat.last_activity_at.desc(), Chat.id.desc()).limit(LIST_LIMIT))
        if include_muted or not chat.muted or chat.id == mailbox.focal_chat_id
    ]
    if not chats:
        return []
    # Ids are time-ordered, so each chat's greatest message id is its last message: one query for all.
    latest = (
        select(func.max(Message.id))
        .where(Message.chat_id.in_([c.id for c in chats]))
        .group_by(Message.chat_id)
        .scalar_subquery()
    )
    last_by_chat = {m.chat_id: m for m in db.scalars(select(Message).where(Message.id.in_(latest)))}
    return [_summary(chat, mailbox, last_by_chat.get(chat.id)) for chat in chats]


def _recent(db: Session, chat_id: str, limit: int, before: str | None = None) -> tuple[list[Message], bool]:
    stmt = select(Message).where(Message.chat_id == chat_id)
    if before is not None:
        stmt = stmt.where(Message.id < before)
    rows = list(db.scalars(stmt.order_by(Message.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    return list(reversed(rows[:limit])), more


def get_focus(db: Session, mailbox_id: str) -> ChatSummary | None:
    """The focal chat, or None when the mailbox has no focus."""
    mailbox = get_mailbox_any_account(db, mailbox_id)
    if mailbox.focal_chat_id is None:
        return None
    chat = db.get(Chat, mailbox.focal_chat_id)
    if chat is None:
        return None
    return _summary(chat, mailbox, _last_message(db, chat.id))


def switch_chat(
    db: Session, mailbox_id: str, address: str | None, *, recap: int = DEFAULT_RECAP, use_mailbox_recap: bool = True
) -> Focus:
    """Make the chat at `address` focal (None clears focus), mark it read, and recap its last messages.

    The recap holds the last N messages of both directions, oldest first: the mailbox's own
    `recap_messages` when it sets one (and `use_mailbox_recap`), else `recap`.

    Raises:
        InvalidInputError: a malformed address or recap size.
        NotFoundError: no such chat in this mailbox.
        ConflictError: the mailbox is archived.
    """
    if not 0 <= recap <= MAX_PAGE:
        raise InvalidInputError(f"recap must be between 0 and {MAX_PAGE}")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    if use_mailbox_recap and mailbox.recap_messages is not None:
        recap = mailbox.recap_messages
    if address is None:
        mailbox.focal_chat_id = None
        db.commit()
        return Focus(chat=None, recap=[])
    chat = find_chat(db, mailbox.id, address)
    mailbox.focal_chat_id = chat.id
    chat.unread_count = 0
    db.commit()
    messages, _ = _recent(db, chat.id, recap)
    last = messages[-1] if messages else None
    return Focus(chat=_summary(chat, mailbox, last), recap=[_view(m, mailbox) for m in messages])


def read_chat(
    db: Session,
    mailbox_id: str,
    address: str,
    *,
    before: str | None = None,
    limit: int = DEFAULT_RECAP,
    links: LinkSigner | None = None,
) -> ChatPage:
    """A page of a chat's history, oldest first, without moving focus or marking anything read.

    `links` signs each attachment's chatbox url (none without it).

    `before` is a message id (`msg_…`, e.g. a page's `next_before`): only older messages are returned.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE}")
    if before is not None and not is_valid_id("message", before):
        raise InvalidInputError("before must be a message id (`msg_…`), e.g. the next_before of a previous page")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    chat = find_chat(db, mailbox.id, address)
    messages, more = _recent(db, chat.id, limit, before)
    return ChatPage(
        chat=_summary(chat, mailbox, _last_message(db, chat.id)),
        messages=[_view(m, mailbox, links) for m in messages],
        next_before=messages[0].id if more and messages else None,
    )


def set_chat_muted(db: Session, mailbox_id: str, address: str, *, muted: bool) -> Chat:
    """Mute or unmute the mailbox's chat at `address`: a muted chat leaves the chat list (its messages are still
    stored and delivered). Idempotent.

    Raises:
        InvalidInputError: a malformed address.
        NotFoundError: no such chat in this mailbox.
    """
    chat = find_chat(db, mailbox_id, address)
    chat.muted = muted
    db.commit()
    return chat
