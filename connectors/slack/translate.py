"""Pure translation between Slack's Events API / Web API shapes and chatbox's normalized messages. No network.

Ids: a Slack `ts` is unique within its channel only, and a reply must name its thread's parent, so a
message's `external_message_id` is `"{channel}:{ts}"`, or `"{channel}:{thread_ts}:{ts}"` inside a
thread; its `reply_to_external_id` is then the parent, `"{channel}:{thread_ts}"`. `send` answers ids
of the same form, so replying to any message of a thread (`reply_to`) lands in that thread.
`external_chat_id` is always the channel id.

Example:
    ```python
    outcome = envelope_to_outcome(parse_event_body(body), SlackIdentity(bot_user_id="U0BOT", bot_id="B0BOT"))
    outcome.reply  # the url_verification challenge, or None
    ```
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.normalized import Attachment, ChatType, InboundMessage, Reaction
from chatbox.domain.untrusted import load_platform_json
from chatbox.ports.ingest import ImmediateReply, IngestOutcome

# Message subtypes that carry what a person wrote; message_changed and message_deleted become "edit" and "delete"
# events, and every other subtype (bot_message, channel_join, ...) is ignored.
CONTENT_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
HANDLED_EVENTS = frozenset({"message", "app_mention"})
REACTION_EVENTS = frozenset({"reaction_added", "reaction_removed"})
CHANGE_SUBTYPES = frozenset({"message_changed", "message_deleted"})

_CHANNEL_TYPES = {"im": ChatType.direct, "mpim": ChatType.group, "channel": ChatType.channel, "group": ChatType.channel}
_PREFIX_TYPES = {"D": ChatType.direct, "C": ChatType.channel, "G": ChatType.channel}

# (kind "user" | "channel", id) -> a display name when already known; never fetches.
NameLookup = Callable[[str, str], str | None]


@dataclass(frozen=True)
class SlackIdentity:
    """Who the bot is (from auth.test at connection create), so its own messages are ignored."""

    bot_user_id: str | None = None
    bot_id: str | None = None


def parse_event_body(body: bytes) -> dict[str, Any]:
    """The JSON object of an Events API request, NUL characters removed; InvalidInputError for anything else
    (not JSON, nested deeper than any Slack event, not an object with a `type`)."""
    data = load_platform_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise InvalidInputError("the body is not a Slack Events API request (no type)")
    return data


def envelope_to_outcome(
    envelope: Mapping[str, Any], identity: SlackIdentity, names: NameLookup | None = None
) -> IngestOutcome:
    """An Events API request as an immediate reply (url_verification) or at most one normalized message."""
    kind = envelope["type"]
    if kind == "url_verification":
        challenge = envelope.get("challenge")
        if not isinstance(challenge, str):
            raise InvalidInputError("url_verification without a challenge")
        return IngestOutcome(reply=ImmediateReply(200, json.dumps({"challenge": challenge}).encode()))
    if kind != "event_callback":
        return IngestOutcome(ignored=f"a {kind} request")
    event_id = envelope.get("event_id")
    key = f"event:{event_id}" if isinstance(event_id, str) else None
    event = envelope.get("event")
    if isinstance(event, dict) and (event.get("type") in REACTION_EVENTS or event.get("subtype") in CHANGE_SUBTYPES):
        return _change_outcome(event, identity, names, key)
    if not isinstance(event, dict) or event.get("type") not in HANDLED_EVENTS:
        return IngestOutcome(delivery_key=key, ignored="an event chatbox does not handle")
    reason = ignore_reason(event, identity)
    if reason is not None:
        return IngestOutcome(delivery_key=key, ignored=reason)
    try:
        inbound = event_to_inbound(event, names)
    except (ValidationError, ValueError, TypeError, OverflowError):  # OverflowError: a `ts` of 1e400
        return IngestOutcome(delivery_key=key, ignored="a message chatbox cannot represent")
    return IngestOutcome(messages=[inbound], delivery_key=key)


def _change_outcome(
    event: Mapping[str, Any], identity: SlackIdentity, names: NameLookup | None, key: str | None
) -> IngestOutcome:
    try:
        if event.get("type") in REACTION_EVENTS:
            inbound = reaction_to_inbound(event, identity, names)
        elif event.get("subtype") == "message_changed":
            inbound = edit_to_inbound(event, identity, names)
        else:
            inbound = deletion_to_inbound(event, identity, names)
    except (ValidationError, ValueError, TypeError, OverflowError, KeyError):
        return IngestOutcome(delivery_key=key, ignored="an event chatbox cannot represent")
    if inbound is None:
        return IngestOutcome(delivery_key=key, ignored="a change that is not for the agent")
    return IngestOutcome(messages=[inbound], delivery_key=key)


def _is_bot(message: Mapping[str, Any], identity: SlackIdentity) -> bool:
    """The bot's own (the agent's edits and deletions come back as events too) or another bot's."""
    user = message.get("user")
    return bool(message.get("bot_id")) or (bool(identity.bot_user_id) and user == identity.bot_user_id)


def _chat_fields(channel: str, event: Mapping[str, Any], user: str | None, names: NameLookup | None) -> dict[str, Any]:
    chat_type = _CHANNEL_TYPES.get(str(event.get("channel_type"))) or _PREFIX_TYPES.get(channel[:1])
    lookup = names or _no_names
    if chat_type is ChatType.direct:
        chat_name = lookup("user", user) if user else None
    else:
        chat_name = lookup("channel", channel)
    return {"external_chat_id": channel, "chat_type": chat_type, "chat_name": chat_name}


def _thread_of(message: Mapping[str, Any]) -> str | None:
    thread = message.get("thread_ts")
    return thread if isinstance(thread, str) and thread != message.get("ts") else None


def edit_to_inbound(
    event: Mapping[str, Any], identity: SlackIdentity, names: NameLookup | None = None
) -> InboundMessage | None:
    """A `message_changed` event as an "edit" of `message.ts`; None for the bot's own edits and for changes that
    leave the text as it was (Slack sends those when it unfurls a link)."""
    channel, message = event["channel"], event.get("message")
    if not isinstance(channel, str) or not isinstance(message, dict) or not isinstance(message.get("ts"), str):
        return None
    raw_previous = event.get("previous_message")
    previous: Mapping[str, Any] = raw_previous if isinstance(raw_previous, dict) else {}
    if _is_bot(message, identity) or message.get("text") == previous.get("text"):
        return None
    user = message.get("user") if isinstance(message.get("user"), str) else None
    target = message_external_id(channel, message["ts"], _thread_of(message))
    return InboundMessage(
        **_chat_fields(channel, event, user, names),
        external_message_id=f"{target}:edit:{event.get('event_ts') or event.get('ts')}",
        text=unescape_text(message.get("text") or "") or None,
        sender_id=user,
        sender_name=(names or _no_names)("user", user) if user else None,
        sent_at=datetime.fromtimestamp(float(event.get("event_ts") or message["ts"]), UTC),
        attachments=files_of(message),
        event_type="edit",
        target_external_id=target,
    )


def deletion_to_inbound(
    event: Mapping[str, Any], identity: SlackIdentity, names: NameLookup | None = None
) -> InboundMessage | None:
    """A `message_deleted` event as a "delete" of `deleted_ts` (Slack does not say who deleted it); None when
    the deleted message was the bot's own."""
    channel, deleted = event.get("channel"), event.get("deleted_ts")
    if not isinstance(channel, str) or not isinstance(deleted, str):
        return None
    raw_previous = event.get("previous_message")
    previous: Mapping[str, Any] = raw_previous if isinstance(raw_previous, dict) else {}
    if _is_bot(previous, identity):
        return None
    author = previous.get("user") if isinstance(previous.get("user"), str) else None
    target = message_external_id(channel, deleted, _thread_of(previous))
    return InboundMessage(
        **_chat_fields(channel, event, author, names),
        external_message_id=f"{target}:delete",
        sent_at=datetime.fromtimestamp(float(event.get("event_ts") or deleted), UTC),
        event_type="delete",
        target_external_id=target,
    )


def reaction_to_inbound(
    event: Mapping[str, Any], identity: SlackIdentity, names: NameLookup | None = None
) -> InboundMessage | None:
    """`reaction_added` / `reaction_removed` on a message as a "reaction" event; the emoji is Slack's name for it
    (`:thumbsup:`). None for the bot's own reactions and for reactions to files."""
    item, user, name = event.get("item"), event.get("user"), event.get("reaction")
    if not isinstance(item, dict) or item.get("type") != "message" or not isinstance(name, str) or not name:
        return None
    channel, ts = item.get("channel"), item.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not isinstance(user, str):
        return None
    if identity.bot_user_id and user == identity.bot_user_id:
        return None
    removed = event.get("type") == "reaction_removed"
    # Slack names the message by channel and ts only, without its thread: a reply in a thread is named
    # `C:ts` here while chatbox stored it as `C:thread:ts`.
    target = message_external_id(channel, ts)
    raw_event_ts = event.get("event_ts")
    event_ts: str = raw_event_ts if isinstance(raw_event_ts, str) else ts
    return InboundMessage(
        **_chat_fields(channel, event, user, names),
        external_message_id=f"{target}:{'unreaction' if removed else 'reaction'}:{user}:{name}:{event_ts}"[:255],
        sender_id=user,
        sender_name=(names or _no_names)("user", user),
        sent_at=datetime.fromtimestamp(float(event_ts), UTC),
        event_type="reaction",
        target_external_id=target,
        reaction=Reaction(emoji=f":{name}:"[:64], removed=removed),
    )


def ignore_reason(event: Mapping[str, Any], identity: SlackIdentity) -> str | None:
    """Why a message event is not for the agent: the bot's own, another bot's, or not a person's content."""
    if event.get("subtype") not in CONTENT_SUBTYPES:
        return f"a {event.get('subtype')} message"
    if event.get("bot_id") or event.get("bot_profile"):
        return "a bot's message"
    user = event.get("user")
    if not isinstance(user, str) or not user:
        return "a message without a user"
    if identity.bot_user_id and user == identity.bot_user_id:
        return "the bot's own message"
    if not isinstance(event.get("channel"), str) or not isinstance(event.get("ts"), str):
        return "a message without channel or ts"
    return None


def event_to_inbound(event: Mapping[str, Any], names: NameLookup | None = None) -> InboundMessage:
    """A person's message or app_mention as an InboundMessage (call `ignore_reason` first)."""
    channel: str = event["channel"]
    ts: str = event["ts"]
    raw_thread = event.get("thread_ts")
    thread_ts = raw_thread if isinstance(raw_thread, str) and raw_thread != ts else None
    user: str = event["user"]
    chat_type = _CHANNEL_TYPES.get(str(event.get("channel_type"))) or _PREFIX_TYPES.get(channel[:1])
    text = unescape_text(event.get("text") or "") or None
    lookup = names or _no_names
    chat_name = lookup("user", user) if chat_type is ChatType.direct else lookup("channel", channel)
    return InboundMessage(
        external_chat_id=channel,
        external_message_id=message_external_id(channel, ts, thread_ts),
        text=text,
        sender_id=user,
        sender_name=lookup("user", user),
        chat_name=chat_name,
        chat_type=chat_type,
        sent_at=datetime.fromtimestamp(float(ts), UTC),
        attachments=files_of(event),
        reply_to_external_id=message_external_id(channel, thread_ts) if thread_ts else None,
    )


def message_external_id(channel: str, ts: str, thread_ts: str | None = None) -> str:
    return f"{channel}:{thread_ts}:{ts}" if thread_ts and thread_ts != ts else f"{channel}:{ts}"


def thread_root(reference: str) -> str:
    """The `thread_ts` to post under for a chatbox message id (`"C:ts"`, `"C:thread:ts"`) or a bare ts."""
    parts = reference.split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def files_of(event: Mapping[str, Any]) -> list[Attachment]:
    found: list[Attachment] = []
    for item in event.get("files") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        mime = item.get("mimetype") if isinstance(item.get("mimetype"), str) else None
        size = item.get("size") if isinstance(item.get("size"), int) else None
        family = mime.split("/", 1)[0] if mime else ""
        kind = {"image": "image", "audio": "audio", "video": "video"}.get(family, "file")
        raw_name = item.get("name")
        name = raw_name[:255] if isinstance(raw_name, str) and raw_name else None
        found.append(Attachment(kind=kind, file_id=item["id"], mime_type=mime, name=name, size=size))
    return found[:32]


def unescape_text(text: str) -> str:
    """Slack escapes `&`, `<`, `>` in message text; mentions and links (`<@U1>`, `<https://…|label>`) stay."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape_text(text: str) -> str:
    """Plain text made safe for mrkdwn: `&`, `<`, `>` escaped as Slack asks (formatting characters stay)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def user_display_name(user: Mapping[str, Any]) -> str | None:
    """A users.info `user` object's best name: display name, then real name, then handle."""
    raw_profile = user.get("profile")
    profile: Mapping[str, Any] = raw_profile if isinstance(raw_profile, dict) else {}
    for candidate in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:255]
    return None


def channel_display_name(channel: Mapping[str, Any]) -> str | None:
    """A conversations.info `channel` object's name (`#general`); None for DMs (named after the person)."""
    name = channel.get("name")
    if channel.get("is_im") or not isinstance(name, str) or not name:
        return None
    return ("#" + name)[:255] if not channel.get("is_mpim") else name[:255]


def _no_names(_kind: str, _id: str) -> str | None:
    return None
