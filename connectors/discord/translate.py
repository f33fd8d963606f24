"""Pure translation from Discord's message objects to the normalized inbound message of connectors/CONTRACT.md.

A gateway dispatch (MESSAGE_CREATE / MESSAGE_UPDATE / MESSAGE_DELETE) and a REST history page carry the
same message object, so one function serves the live socket and the backfill after a gap. Nothing here
imports chatbox or discord.py: the container image ships only `connectors/`, and the functions take the
raw JSON the gateway sent.

Ids:
- `external_chat_id` is the channel id. A thread is a channel of its own on Discord (its id is the
  `channel_id` of its messages), so it is its own chat; its name reads `#parent › thread` when the
  client's cache knows both, and a reply in it is sent to the thread's id.
- `external_message_id` is the message's snowflake. An edit is `"{id}:edit:{edited_timestamp}"` (each
  edit of a message is its own event, `event_type` "edit"), a deletion `"{id}:delete"` (`event_type`
  "delete", `reply_to_external_id` naming the deleted message: the gateway sends nothing else of it).
- A reaction is `"{id}:reaction:{user}:{emoji}"` (`event_type` "reaction", the emoji as text, replying to
  the message reacted to), its removal `"{id}:unreaction:{user}:{emoji}"` (text `removed <emoji>`); the
  same person adding the same emoji again after removing it is the same event to chatbox.
- `send` answers the snowflake of the first part it posted, so a reply can reference it.

Example:
    ```python
    message = dispatch_to_inbound("MESSAGE_CREATE", data, bot_user_id="1100000000000000001")
    message["external_chat_id"]  # the channel (or thread) id; None when the event is not for the agent
    ```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

NUL = "\x00"
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_TEXT = 65_536
MAX_SHORT = 255
MAX_ATTACHMENTS = 32

# Message types that carry what a person wrote: DEFAULT and REPLY. Joins, pins, boosts, thread-created
# notices and slash-command echoes are system messages the agent has no use for.
CONTENT_TYPES = frozenset({0, 19})
VOICE_MESSAGE_FLAG = 1 << 13
STICKER_URL = "https://media.discordapp.net/stickers/{id}.png"

_USER_MENTION = re.compile(r"<@!?(\d{15,21})>")
_SNOWFLAKE = re.compile(r"\d{1,20}")

Json = dict[str, Any]


@dataclass(frozen=True)
class ChannelInfo:
    """What the client's cache knows of a channel: its name, and for a thread its parent."""

    name: str | None = None
    is_thread: bool = False
    parent_name: str | None = None


# channel id -> what the cache knows of it, or None; never fetches.
ChannelLookup = Callable[[str], ChannelInfo | None]


def _no_channels(_channel_id: str) -> ChannelInfo | None:
    return None


def dispatch_to_inbound(
    event: str, data: Mapping[str, Any], *, bot_user_id: str | None, channels: ChannelLookup | None = None
) -> Json | None:
    """A gateway dispatch as a normalized message dict, or None when it is nothing for the agent (the bot's own
    or another bot's message, a system message, an embed unfurl, an event of another type)."""
    if event == "MESSAGE_CREATE":
        return message_to_inbound(data, bot_user_id=bot_user_id, channels=channels)
    if event == "MESSAGE_UPDATE":
        return message_to_inbound(data, bot_user_id=bot_user_id, channels=channels, edit=True)
    if event == "MESSAGE_DELETE":
        return deletion_to_inbound(data, channels=channels)
    if event in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
        removed = event == "MESSAGE_REACTION_REMOVE"
        return reaction_to_inbound(data, bot_user_id=bot_user_id, channels=channels, removed=removed)
    return None


def message_to_inbound(
    data: Mapping[str, Any],
    *,
    bot_user_id: str | None,
    channels: ChannelLookup | None = None,
    edit: bool = False,
) -> Json | None:
    """A Discord message object (gateway or REST) as a normalized message dict; None when not for the agent."""
    message_id = _snowflake(data.get("id"))
    channel_id = _snowflake(data.get("channel_id"))
    author = data.get("author")
    if message_id is None or channel_id is None or not isinstance(author, dict):
        return None
    if author.get("bot") or (bot_user_id is not None and str(author.get("id")) == bot_user_id):
        return None  # the bot's own sends, and other bots (two agents answering each other would never stop)
    if data.get("type", 0) not in CONTENT_TYPES:
        return None
    edited_at = data.get("edited_timestamp")
    if edit and not isinstance(edited_at, str):
        return None  # an update without an edit: Discord filled in a link preview (embed), nothing was written
    text = render_text(str(data.get("content") or ""), data.get("mentions"))
    attachments = attachments_of(data)
    if not text and not attachments:
        return None
    info = (channels or _no_channels)(channel_id)
    direct = data.get("guild_id") is None
    sender_name = display_name(author, data.get("member"))
    reference = data.get("message_reference")
    reply_to = _snowflake(reference.get("message_id")) if isinstance(reference, dict) else None
    return _clean(
        {
            "external_chat_id": channel_id,
            "external_message_id": f"{message_id}:edit:{edited_at}" if edit else message_id,
            "text": text[:MAX_TEXT] or None,
            "sender_id": _snowflake(author.get("id")),
            "sender_name": _short(sender_name),
            "chat_name": _short(sender_name if direct else chat_name(info)),
            "chat_type": "direct" if direct else "channel",
            "sent_at": _timestamp(edited_at if edit else data.get("timestamp")) or snowflake_time(message_id),
            "reply_to_external_id": reply_to,
            "attachments": attachments,
            "event_type": "edit" if edit else "message",
            "target_external_id": message_id if edit else None,
        }
    )


def deletion_to_inbound(data: Mapping[str, Any], *, channels: ChannelLookup | None = None) -> Json | None:
    """A MESSAGE_DELETE dispatch (`id`, `channel_id`, `guild_id`) as a "delete" event naming the deleted message."""
    message_id = _snowflake(data.get("id"))
    channel_id = _snowflake(data.get("channel_id"))
    if message_id is None or channel_id is None:
        return None
    direct = data.get("guild_id") is None
    info = (channels or _no_channels)(channel_id)
    return _clean(
        {
            "external_chat_id": channel_id,
            "external_message_id": f"{message_id}:delete",
            "text": f"Message {message_id} was deleted.",
            "chat_name": None if direct else _short(chat_name(info)),
            "chat_type": "direct" if direct else "channel",
            "sent_at": None,
            "reply_to_external_id": message_id,
            "attachments": [],
            "event_type": "delete",
            "target_external_id": message_id,
        }
    )


def reaction_to_inbound(
    data: Mapping[str, Any], *, bot_user_id: str | None, channels: ChannelLookup | None = None, removed: bool = False
) -> Json | None:
    """A MESSAGE_REACTION_ADD / _REMOVE dispatch as a "reaction" event; None for the bot's own or another bot's."""
    message_id = _snowflake(data.get("message_id"))
    channel_id = _snowflake(data.get("channel_id"))
    user_id = _snowflake(data.get("user_id"))
    emoji = data.get("emoji")
    if message_id is None or channel_id is None or user_id is None or not isinstance(emoji, dict):
        return None
    member = data.get("member")
    user = member.get("user") if isinstance(member, dict) else None
    if user_id == bot_user_id or (isinstance(user, dict) and user.get("bot")):
        return None
    name = emoji.get("name") if isinstance(emoji.get("name"), str) else None
    custom_id = _snowflake(emoji.get("id"))
    if not name and custom_id is None:
        return None
    shown = f":{name}:" if custom_id is not None else str(name)
    key = custom_id or str(name)
    direct = data.get("guild_id") is None
    sender_name = display_name(user, member) if isinstance(user, dict) else None
    return _clean(
        {
            "external_chat_id": channel_id,
            "external_message_id": f"{message_id}:{'unreaction' if removed else 'reaction'}:{user_id}:{key}"[:255],
            "text": f"removed {shown}" if removed else shown,
            "sender_id": user_id,
            "sender_name": _short(sender_name),
            "chat_name": None if direct else _short(chat_name((channels or _no_channels)(channel_id))),
            "chat_type": "direct" if direct else "channel",
            "reply_to_external_id": message_id,
            "attachments": [],
            "event_type": "reaction",
            "target_external_id": message_id,
            "reaction": {"emoji": shown[:64], "removed": removed},
        }
    )


def render_text(content: str, mentions: Any) -> str:
    """The content with user mentions (`<@id>`, `<@!id>`) shown as `@name`, so the agent reads who was meant,
    its own name included; mentions of users the payload does not name stay as Discord wrote them."""
    names: dict[str, str] = {}
    if isinstance(mentions, list):
        for user in mentions:
            if isinstance(user, dict) and _snowflake(user.get("id")):
                names[str(user["id"])] = display_name(user, user.get("member"))
    rendered = _USER_MENTION.sub(lambda m: f"@{names[m.group(1)]}" if m.group(1) in names else m.group(0), content)
    return rendered.replace(NUL, "")


def mentions_user(data: Mapping[str, Any], user_id: str) -> bool:
    """Whether the message mentions this user (the bot, for instance)."""
    mentions = data.get("mentions")
    return isinstance(mentions, list) and any(isinstance(u, dict) and str(u.get("id")) == user_id for u in mentions)


def display_name(user: Mapping[str, Any], member: Any = None) -> str:
    """The name Discord shows: the server nickname, else the global display name, else the username."""
    nick = member.get("nick") if isinstance(member, dict) else None
    for name in (nick, user.get("global_name"), user.get("username")):
        if isinstance(name, str) and name.strip():
            return name.replace(NUL, "")
    return str(user.get("id", ""))


def chat_name(info: ChannelInfo | None) -> str | None:
    if info is None or not info.name:
        return None
    if info.is_thread and info.parent_name:
        return f"#{info.parent_name} › {info.name}"
    return f"#{info.name}"


def attachments_of(data: Mapping[str, Any]) -> list[Json]:
    """Files (CDN urls, which Discord signs for about a day) and stickers, as normalized attachments."""
    found: list[Json] = []
    voice = isinstance(data.get("flags"), int) and bool(data["flags"] & VOICE_MESSAGE_FLAG)
    for item in data.get("attachments") or []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        mime = item.get("content_type") if isinstance(item.get("content_type"), str) else None
        found.append(
            _clean(
                {
                    "kind": "voice" if voice else _kind_of(mime),
                    "url": item["url"][:2048],
                    "mime_type": _short(mime),
                    "name": _short(item.get("filename")),
                    "size": item["size"] if isinstance(item.get("size"), int) and item["size"] >= 0 else None,
                }
            )
        )
    for sticker in data.get("sticker_items") or []:
        if isinstance(sticker, dict) and _snowflake(sticker.get("id")):
            url = STICKER_URL.format(id=sticker["id"])
            found.append(_clean({"kind": "sticker", "url": url, "name": _short(sticker.get("name"))}))
    return found[:MAX_ATTACHMENTS]


def _kind_of(mime: str | None) -> str:
    major = (mime or "").split("/", 1)[0]
    return {"image": "image", "video": "video", "audio": "audio"}.get(major, "file")


def snowflake_time(snowflake: str) -> str:
    """When Discord minted this id (its top 42 bits count milliseconds since 2015-01-01)."""
    millis = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def snowflake_key(snowflake: str) -> int:
    """Snowflakes order by time; compare them as numbers (as strings "9" > "10")."""
    return int(snowflake)


def _snowflake(value: Any) -> str | None:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    return text if _SNOWFLAKE.fullmatch(text) else None


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1970 <= parsed.astimezone(UTC).year <= 9998:
        return None
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _short(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.replace(NUL, "").strip()
    return text[:MAX_SHORT] or None


def _clean(message: Json) -> Json:
    """Without the keys that hold None: chatbox reads a missing field as its default."""
    return {key: value for key, value in message.items() if value is not None}
