"""Acting on messages as the agent: edit and delete its own, react to any, show typing in a chat.

Message ids are those the agent sees: chatbox's `msg_…` ids (webhook bodies, read_chat), or a platform id
(`external_id`) within a chat (default: the focal chat). An id chatbox does not know, another mailbox's message,
or someone else's message to edit or delete is a clear error before any platform call. What the platform
accepted is then written back (edited text, deleted mark), so read_chat shows the chat as the other side sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError, NotFoundError
from chatbox.domain.ids import is_valid_id
from chatbox.domain.untrusted import MAX_TEXT
from chatbox.domain.vault import Vault
from chatbox.ports.connector import ConnectionContext, Connector
from chatbox.ports.message_actions import (
    DELETE,
    EDIT,
    REACT,
    TYPING,
    MessageRef,
    is_deleter,
    is_editor,
    is_reactor,
    is_typing_indicator,
)
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.connections import connection_context, report_connection_error
from chatbox.services.mailboxes import get_mailbox_any_account, require_live_mailbox
from chatbox.services.sending import _carrying_connection, _target_chat
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Chat, Connection, Mailbox, Message
from chatbox.store.types import utcnow

MAX_EMOJI = 64
# What each action is called in errors and notes, by the connector method that performs it.
ACTION_WORDS = {EDIT: "editing messages", DELETE: "deleting messages", REACT: "reactions", TYPING: "typing indicators"}


@dataclass(frozen=True)
class ActionReceipt:
    """An action the platform accepted: on which message (None for typing) in which chat."""

    chat_id: str  # the chat address
    message_id: str | None = None  # chatbox's id of the message acted on
    external_id: str | None = None  # the platform's id of it


@dataclass
class _Prepared:
    mailbox: Mailbox
    chat: Chat
    connection: Connection
    connector: Connector
    ctx: ConnectionContext


def find_message(db: Session, mailbox: Mailbox, message_id: str, chat: str | None) -> tuple[Message, Chat]:
    """The mailbox's message named by a `msg_…` id, or by its platform id within `chat` (default: the focal chat).

    Raises NotFoundError for an id this mailbox does not have, InvalidInputError for an event (an edit, a
    reaction) named instead of a message, NoFocusError for a platform id without a chat and without focus.
    """
    message_id = message_id.strip()
    if message_id.startswith("msg_"):
        found = db.get(Message, message_id) if is_valid_id("message", message_id) else None
        owner = db.get(Chat, found.chat_id) if found is not None else None
        if found is None or owner is None or owner.mailbox_id != mailbox.id:
            raise NotFoundError(
                f"no message {message_id} in this mailbox; use a message id (`msg_…`) from read_chat or a webhook"
            )
        message, target_chat = found, owner
    else:
        target_chat = _target_chat(db, mailbox, chat)
        by_platform_id = db.scalar(
            select(Message)
            .where(
                Message.chat_id == target_chat.id, Message.external_id == message_id, Message.event_type == "message"
            )
            .order_by(Message.id)
            .limit(1)
        )
        if by_platform_id is None:
            raise NotFoundError(
                f"no message with platform id {message_id} in {target_chat.address}; use a message id (`msg_…`) "
                "from read_chat or a webhook"
            )
        message = by_platform_id
    if message.event_type != "message":
        concerns = f" (it concerns {message.target_external_id})" if message.target_external_id else ""
        raise InvalidInputError(
            f"{message.id} is a {message.event_type} event, not a message{concerns}; name the message itself"
        )
    if message.external_id is None:
        raise InvalidInputError(f"{message.id} has no platform id, so the platform cannot be asked about it")
    return message, target_chat


def _prepare(db: Session, vault: Vault, platforms: PlatformRegistry, mailbox: Mailbox, chat: Chat) -> _Prepared:
    connection = _carrying_connection(db, mailbox, chat)
    connector = platforms.connector(chat.platform)
    return _Prepared(mailbox, chat, connection, connector, connection_context(db, vault, connection))


def _lacks(platform: str, action: str) -> InvalidInputError:
    return InvalidInputError(f"{platform} does not support {ACTION_WORDS[action]} through chatbox")


def _call_platform(db: Session, prepared: _Prepared, call: Callable[[], None]) -> None:
    release_before_network_call(db)
    try:
        call()
    except ConnectorUnavailableError as exc:
        report_connection_error(db, prepared.connection, exc.message)
        raise


def _own_message(message: Message, verb: str) -> None:
    if message.direction != "out":
        who = message.sender_name or message.sender_id or "someone else"
        raise InvalidInputError(f"{message.id} was written by {who}, not by you: only your own messages can be {verb}")
    if message.deleted_at is not None:
        raise InvalidInputError(f"{message.id} was already deleted")


def edit_message(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    mailbox_id: str,
    message_id: str,
    text: str,
    *,
    chat: str | None = None,
) -> ActionReceipt:
    """Replace the text of one of the agent's messages on its platform, then in chatbox.

    Raises:
        NotFoundError / InvalidInputError: an unknown id, someone else's message, an empty text, a platform
            without edits.
        ConflictError: the mailbox or the chat's connection is archived.
        ConnectorUnavailableError, PlatformRefusedError, RateLimitedError: from the connector.
    """
    if not text.strip():
        raise InvalidInputError("text is empty: write the new text of the message")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(f"text is longer than {MAX_TEXT} characters")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    message, target_chat = find_message(db, mailbox, message_id, chat)
    _own_message(message, "edited")
    prepared = _prepare(db, vault, platforms, mailbox, target_chat)
    connector = prepared.connector
    if not is_editor(connector):
        raise _lacks(target_chat.platform, EDIT)
    ref = MessageRef(target_chat.external_id, str(message.external_id))
    chat_address, stored_id = target_chat.address, message.id
    _call_platform(db, prepared, lambda: connector.edit_message(prepared.ctx, ref, text))
    stored = db.get(Message, stored_id)
    if stored is not None:
        stored.text, stored.edited_at = text, utcnow()
        db.commit()
    return ActionReceipt(chat_address, stored_id, ref.message_id)


def delete_message(
    db: Session, vault: Vault, platforms: PlatformRegistry, mailbox_id: str, message_id: str, *, chat: str | None = None
) -> ActionReceipt:
    """Delete one of the agent's messages on its platform, and mark it deleted in chatbox (it stays in history).

    Raises what `edit_message` raises.
    """
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    message, target_chat = find_message(db, mailbox, message_id, chat)
    _own_message(message, "deleted")
    prepared = _prepare(db, vault, platforms, mailbox, target_chat)
    connector = prepared.connector
    if not is_deleter(connector):
        raise _lacks(target_chat.platform, DELETE)
    ref = MessageRef(target_chat.external_id, str(message.external_id))
    chat_address, stored_id = target_chat.address, message.id
    _call_platform(db, prepared, lambda: connector.delete_message(prepared.ctx, ref))
    stored = db.get(Message, stored_id)
    if stored is not None:
        stored.deleted_at = utcnow()
        db.commit()
    return ActionReceipt(chat_address, stored_id, ref.message_id)


def react(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    mailbox_id: str,
    message_id: str,
    emoji: str,
    *,
    remove: bool = False,
    chat: str | None = None,
) -> ActionReceipt:
    """Add (or with `remove`, take back) the agent's reaction to any message of the mailbox.

    Raises what `edit_message` raises (anyone's message may be reacted to).
    """
    emoji = emoji.strip()
    if not emoji or len(emoji) > MAX_EMOJI:
        raise InvalidInputError("emoji must be one emoji, e.g. 👍 (on Slack also its name, e.g. thumbsup)")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    message, target_chat = find_message(db, mailbox, message_id, chat)
    if message.deleted_at is not None:
        raise InvalidInputError(f"{message.id} was deleted; there is nothing left to react to")
    prepared = _prepare(db, vault, platforms, mailbox, target_chat)
    connector = prepared.connector
    if not is_reactor(connector):
        raise _lacks(target_chat.platform, REACT)
    ref = MessageRef(target_chat.external_id, str(message.external_id))
    chat_address, stored_id = target_chat.address, message.id
    _call_platform(db, prepared, lambda: connector.react(prepared.ctx, ref, emoji, remove=remove))
    return ActionReceipt(chat_address, stored_id, ref.message_id)


def send_typing(
    db: Session, vault: Vault, platforms: PlatformRegistry, mailbox_id: str, *, chat: str | None = None
) -> ActionReceipt:
    """Show "typing…" in the chat (default: the focal chat) for a few seconds; the platform clears it by itself
    or when the next message arrives.

    Raises what `edit_message` raises (NoFocusError without a chat and without focus).
    """
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target_chat = _target_chat(db, mailbox, chat)
    prepared = _prepare(db, vault, platforms, mailbox, target_chat)
    connector = prepared.connector
    if not is_typing_indicator(connector):
        raise _lacks(target_chat.platform, TYPING)
    chat_address, external_chat = target_chat.address, target_chat.external_id
    _call_platform(db, prepared, lambda: connector.send_typing(prepared.ctx, external_chat))
    return ActionReceipt(chat_address)
