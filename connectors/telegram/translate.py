"""Pure translation between Telegram's Bot API shapes and chatbox's normalized messages. No network.

Ids: a Telegram `message_id` is unique within its chat only, so a message's `external_message_id`
is `"{chat_id}:{message_id}"`. An edit is its own event, `"{chat_id}:{message_id}:edit:{update_id}"`
(`update_id` is unique per update, so every edit is kept and a redelivered update is a duplicate), naming the
edited message in `target_external_id`. A reaction change is `"{chat_id}:{message_id}:reaction:{update_id}"`.
`send` answers ids of the same form, and `reply_to` accepts them (or a bare message id).

Example:
    ```python
    outcome = update_to_outcome(json.loads(body))
    outcome.messages[0].external_message_id  # "-1001234567890:42"
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.normalized import Attachment, ChatType, InboundMessage, Reaction
from chatbox.domain.untrusted import PLATFORM_JSON_DEPTH, load_platform_json
from chatbox.ports.ingest import IngestOutcome
from connectors.telegram.updates import PRIVATE, Chat, Message, MessageReactionUpdated, ReactionType, Update, User

# What chatbox asks Telegram to push (setWebhook `allowed_updates`); everything else is not sent at all.
# `message_reaction` must be named: Telegram leaves it out of the default. It reaches a bot only in chats where the
# bot is an administrator (not in private chats); Telegram tells bots nothing of deletions.
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post", "message_reaction")

_CHAT_TYPES = {
    PRIVATE: ChatType.direct,
    "group": ChatType.group,
    "supergroup": ChatType.group,
    "channel": ChatType.channel,
}


def parse_update_body(body: bytes) -> dict[str, Any]:
    """The JSON object of an update, NUL characters removed (Postgres cannot store them, and the message
    should not be lost over one); InvalidInputError for anything that is not an update."""
    data = load_platform_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int) or isinstance(data["update_id"], bool):
        raise InvalidInputError("the body is not a Telegram update (no integer update_id)")
    return data


def update_to_outcome(data: Mapping[str, Any]) -> IngestOutcome:
    """One update as normalized messages: a message or channel post (or their edits) with text, a
    caption or media becomes one message; anything else is ignored (an empty outcome, still acked).

    Raises InvalidInputError when the update does not parse as Telegram's Update shape.
    """
    try:
        # The update's own model (`updates.py`), not the SDK's `de_json`: a fraction of the cost per update.
        update = Update.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"the update does not parse: {_first_problem(exc)}") from exc
    return _outcome_of(update)


def body_to_outcome(body: bytes) -> IngestOutcome:
    """`update_to_outcome(parse_update_body(body))`, the same answer, in one pass where one pass gives it.

    pydantic parses and validates the JSON at once (`model_validate_json`; the whole translation of a text update
    11.6 -> 10.2 us on the event loop), but only for a body whose answer that cannot change: no `\\u0000` to remove,
    too few brackets to nest past the limit, no `NaN` or `Infinity` (not JSON, though pydantic would take them),
    and strictly typed (pydantic's lax JSON mode would take `"update_id": "12"`). Any other body, and any the one
    pass refuses, goes the two-pass way, which answers it (or refuses it) as before.
    """
    if _one_pass_gives_the_same_answer(body):
        try:
            update = Update.model_validate_json(body, strict=True)
        except ValidationError:
            pass
        else:
            return _outcome_of(update)
    return update_to_outcome(parse_update_body(body))


def _one_pass_gives_the_same_answer(body: bytes) -> bool:
    return (
        body.count(b"[") + body.count(b"{") <= PLATFORM_JSON_DEPTH
        and b"\\u0000" not in body
        and b"NaN" not in body
        and b"Infinity" not in body
    )


def _outcome_of(update: Update) -> IngestOutcome:
    key = f"update:{update.update_id}"
    if update.message_reaction is not None:
        try:
            change = MessageReactionUpdated.model_validate(update.message_reaction)
            reaction = reaction_to_inbound(change, update_id=update.update_id)
        except (ValidationError, InvalidInputError):
            reaction = None
        if reaction is None:
            return IngestOutcome(delivery_key=key, ignored="a reaction change chatbox cannot represent")
        return IngestOutcome(messages=[reaction], delivery_key=key)
    edited = update.edited_message or update.edited_channel_post
    message = update.message or update.channel_post or edited
    if message is None:
        return IngestOutcome(delivery_key=key, ignored="an update chatbox does not handle")
    try:
        inbound = message_to_inbound(message, update_id=update.update_id, edit=edited is not None)
    except ValidationError:
        return IngestOutcome(delivery_key=key, ignored="a message chatbox cannot represent")
    if inbound is None:
        return IngestOutcome(delivery_key=key, ignored="a message without text or media")
    return IngestOutcome(messages=[inbound], delivery_key=key)


def message_to_inbound(message: Message, *, update_id: int, edit: bool) -> InboundMessage | None:
    """A Telegram message as an InboundMessage; None when it carries neither text nor media (joins, pins, ...)."""
    text = message.text or message.caption
    attachments = attachments_of(message)
    if not text and not attachments:
        return None
    chat = message.chat
    message_key = message_external_id(chat.id, message.message_id)
    reply = message.reply_to_message
    return InboundMessage(
        external_chat_id=str(chat.id),
        external_message_id=f"{message_key}:edit:{update_id}" if edit else message_key,
        text=text,
        sender_id=_sender_id(message),
        sender_name=_clip(_sender_name(message)),
        chat_name=_clip(_chat_name(chat, message.from_user)),
        chat_type=_CHAT_TYPES.get(chat.type),
        sent_at=_time((message.edit_date or message.date) if edit else message.date),
        attachments=attachments,
        reply_to_external_id=message_external_id(chat.id, reply.message_id) if reply is not None else None,
        event_type="edit" if edit else "message",
        target_external_id=message_key if edit else None,
    )


def _emoji_of(reaction: ReactionType) -> str | None:
    if reaction.type == "emoji" and reaction.emoji:
        return reaction.emoji
    if reaction.type == "custom_emoji" and reaction.custom_emoji_id:
        return f":custom_emoji:{reaction.custom_emoji_id}"[:64]
    return None  # a paid reaction (a star) is no emoji


def reaction_to_inbound(change: MessageReactionUpdated, *, update_id: int) -> InboundMessage | None:
    """A `message_reaction` update (a user's whole reaction list, old and new) as one reaction event: the emoji
    added, or when none was, the one taken back. None for a change with neither (a paid reaction)."""
    old = [e for e in (_emoji_of(r) for r in change.old_reaction) if e]
    new = [e for e in (_emoji_of(r) for r in change.new_reaction) if e]
    added = [e for e in new if e not in old]  # Telegram sends the whole list before and after the change
    removed = [e for e in old if e not in new]
    if not added and not removed:
        return None
    chat = change.chat
    actor = change.user
    if actor is not None and actor.is_bot:
        return None  # a bot's reaction (the agent's own included): two agents acknowledging each other never stop
    sender_id = str(actor.id) if actor is not None else (str(change.actor_chat.id) if change.actor_chat else None)
    sender_name: str | None
    if actor is not None:
        sender_name = actor.full_name
    else:
        sender_name = change.actor_chat.title if change.actor_chat is not None else None
    target = message_external_id(chat.id, change.message_id)
    return InboundMessage(
        external_chat_id=str(chat.id),
        external_message_id=f"{target}:reaction:{update_id}",
        sender_id=sender_id,
        sender_name=_clip(sender_name),
        chat_name=_clip(_chat_name(chat, actor)),
        chat_type=_CHAT_TYPES.get(chat.type),
        sent_at=_time(change.date),
        event_type="reaction",
        target_external_id=target,
        reply_to_external_id=target,
        reaction=Reaction(emoji=added[0] if added else removed[0], removed=not added),
    )


def _time(unix: int) -> datetime:
    try:
        return datetime.fromtimestamp(unix, UTC)
    except (OverflowError, OSError, ValueError) as exc:  # a date past what the platform's time_t holds
        raise InvalidInputError("the update does not parse: a date out of range") from exc


def _first_problem(exc: ValidationError) -> str:
    """Where the update failed to parse (a field path, never its value: the body is the platform's data)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"


def message_external_id(chat_id: int | str, message_id: int | str) -> str:
    return f"{chat_id}:{message_id}"


def reply_message_id(reply_to: str) -> int | None:
    """The Telegram message id inside a chatbox reference (`"chat:message"`, `"chat:message:edit:n"` or
    a bare message id); None when it names none."""
    parts = reply_to.split(":")
    candidate = parts[1] if len(parts) >= 2 else parts[0]
    try:
        return int(candidate)
    except ValueError:
        return None


def attachments_of(message: Message) -> list[Attachment]:
    """Media as attachments by `file_id` (resolved to a download URL only when someone asks: getFile)."""
    found: list[Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda size: size.width * size.height)
        found.append(Attachment(kind="image", file_id=largest.file_id, size=largest.file_size))
    if message.document is not None:
        document = message.document
        found.append(
            Attachment(
                kind="document",
                file_id=document.file_id,
                mime_type=document.mime_type,
                name=_clip(document.file_name),
                size=document.file_size,
            )
        )
    if message.voice is not None:
        voice = message.voice
        found.append(Attachment(kind="voice", file_id=voice.file_id, mime_type=voice.mime_type, size=voice.file_size))
    if message.audio is not None:
        audio = message.audio
        found.append(
            Attachment(
                kind="audio",
                file_id=audio.file_id,
                mime_type=audio.mime_type,
                name=_clip(audio.file_name),
                size=audio.file_size,
            )
        )
    if message.video is not None:
        video = message.video
        found.append(Attachment(kind="video", file_id=video.file_id, mime_type=video.mime_type, size=video.file_size))
    if message.sticker is not None:
        sticker = message.sticker
        found.append(Attachment(kind="sticker", file_id=sticker.file_id, name=sticker.emoji, size=sticker.file_size))
    return found


def _sender_id(message: Message) -> str | None:
    if message.from_user is not None:
        return str(message.from_user.id)
    if message.sender_chat is not None:
        return str(message.sender_chat.id)
    return None


def _sender_name(message: Message) -> str | None:
    if message.from_user is not None:
        return message.from_user.full_name
    if message.sender_chat is not None:
        return message.sender_chat.title or message.sender_chat.username
    return None


def _chat_name(chat: Chat, sender: User | None) -> str | None:
    if chat.type == PRIVATE:
        if chat.first_name:
            return " ".join(part for part in (chat.first_name, chat.last_name) if part)
        return sender.full_name if sender is not None else chat.username
    return chat.title or chat.username


def _clip(value: str | None, limit: int = 255) -> str | None:
    return value[:limit] if value else value
