"""signal-cli `receive` notifications → normalized inbound messages (CONTRACT.md), as pure functions.

Ids: a Signal message is identified by its author and its timestamp (that is what a quote or a
reaction names), so `external_message_id` is `<author>:<timestamp>`, the author being the number
(`+E164`) or, for an account without one, the ACI (uuid). What the program answers for a send has the
same form with our own account as author, so a reply can quote either. Chats: a direct chat is the
other party's number (or uuid); a group is `groupInfo.groupId` (base64).

Handled: data messages (text, attachments, quotes → `reply_to_external_id`, mentions written as
`@number`), reactions (`event_type` "reaction", the emoji as text; a removal reads "removed <emoji>"),
edits (`event_type` "edit", replying to the edited message), remote deletions (`event_type` "delete");
each names the message concerned in `target_external_id` too; a reaction carries `reaction` {emoji, removed}.
Ignored (None): our own messages sent from a linked device (`syncMessage`), receipts, typing, stories, calls,
group updates and anything without text or a file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

OBJECT_REPLACEMENT = "\ufffc"  # where Signal puts a mention in the text
MAX_TEXT = 65_536


def message_key(author: str, timestamp: int | str) -> str:
    return f"{author}:{timestamp}"


def parse_message_key(key: str) -> tuple[str | None, int] | None:
    """`<author>:<timestamp>` (or a bare timestamp) → (author or None, timestamp); None when it is neither."""
    author, _, stamp = key.rpartition(":")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 19:
        return None
    return (author or None, int(stamp))


def _author(number: Any, uuid: Any) -> str | None:
    for value in (number, uuid):
        if isinstance(value, str) and value:
            return value
    return None


def _sent_at(timestamp: Any) -> str | None:
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        return None
    try:
        moment = datetime.fromtimestamp(timestamp / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat().replace("+00:00", "Z") if 1970 <= moment.year < 9999 else None


def _with_mentions(text: str, mentions: Any) -> str:
    """Write each mention (a U+FFFC at `start`, `length` UTF-16 units) as `@<number or uuid>`."""
    if not isinstance(mentions, list) or OBJECT_REPLACEMENT not in text:
        return text
    units = text.encode("utf-16-le")
    spans = []
    for mention in mentions:
        if not isinstance(mention, dict):
            continue
        start, length = mention.get("start"), mention.get("length")
        who = _author(mention.get("number"), mention.get("uuid")) or "someone"
        if isinstance(start, int) and isinstance(length, int) and 0 <= start and 0 < length:
            spans.append((start, length, who))
    for start, length, who in sorted(spans, reverse=True):
        if (start + length) * 2 <= len(units):
            units = units[: start * 2] + f"@{who}".encode("utf-16-le") + units[(start + length) * 2 :]
    return units.decode("utf-16-le", errors="replace")


def _attachment_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return {"image": "image", "video": "video", "audio": "audio"}.get(major, "file")


def _attachments(data: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for item in data.get("attachments") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            continue
        raw_type = item.get("contentType")
        content_type = raw_type if isinstance(raw_type, str) else ""
        attachment: dict[str, Any] = {"kind": _attachment_kind(content_type), "file_id": item["id"][:512]}
        if content_type:
            attachment["mime_type"] = content_type[:255]
        if isinstance(item.get("filename"), str) and item["filename"]:
            attachment["name"] = item["filename"][:255]
        if isinstance(item.get("size"), int) and item["size"] >= 0:
            attachment["size"] = item["size"]
        found.append(attachment)
    return found[:32]


def _chat(envelope: dict[str, Any], data: dict[str, Any], sender: str) -> dict[str, Any]:
    group = data.get("groupInfo")
    if isinstance(group, dict) and isinstance(group.get("groupId"), str) and group["groupId"]:
        name = group.get("groupName")
        return {
            "external_chat_id": group["groupId"],
            "chat_type": "group",
            "chat_name": name[:255] if isinstance(name, str) and name else None,
        }
    name = envelope.get("sourceName")
    return {
        "external_chat_id": sender,
        "chat_type": "direct",
        "chat_name": name[:255] if isinstance(name, str) and name else None,
    }


def translate_envelope(envelope: Any) -> dict[str, Any] | None:
    """One signal-cli envelope → a normalized message dict, or None when it is nothing for the agent."""
    if not isinstance(envelope, dict):
        return None
    sender = _author(envelope.get("sourceNumber"), envelope.get("sourceUuid"))
    if sender is None:
        return None
    edit = envelope.get("editMessage")
    data = envelope.get("dataMessage")
    event_type, replaces = "message", None
    if isinstance(edit, dict) and isinstance(edit.get("dataMessage"), dict):
        data, event_type = edit["dataMessage"], "edit"
        target = edit.get("targetSentTimestamp")
        replaces = message_key(sender, target) if isinstance(target, int) else None
    if not isinstance(data, dict):
        return None
    timestamp = data.get("timestamp", envelope.get("timestamp"))
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp <= 0:
        return None
    group = data.get("groupInfo")
    if isinstance(group, dict) and group.get("type") == "UPDATE" and not data.get("message"):
        return None

    message: dict[str, Any] = {
        "external_message_id": message_key(sender, timestamp),
        "sender_id": sender,
        "sender_name": envelope["sourceName"][:255] if isinstance(envelope.get("sourceName"), str) else None,
        "sent_at": _sent_at(timestamp),
        **_chat(envelope, data, sender),
    }
    deleted = data.get("remoteDelete")
    if isinstance(deleted, dict) and isinstance(deleted.get("timestamp"), int):
        # Only the author can delete a message for everyone, so the target is the sender's own.
        target = message_key(sender, deleted["timestamp"])
        message["event_type"] = "delete"
        message["target_external_id"] = target
        message["reply_to_external_id"] = target
        return _compact(message)
    reaction = data.get("reaction")
    if isinstance(reaction, dict):
        target_author = _author(reaction.get("targetAuthorNumber"), reaction.get("targetAuthorUuid"))
        target = reaction.get("targetSentTimestamp")
        raw_emoji = reaction.get("emoji")
        emoji: str = raw_emoji if isinstance(raw_emoji, str) and raw_emoji else "?"
        message["event_type"] = "reaction"
        message["text"] = f"removed {emoji}" if reaction.get("isRemove") else emoji
        message["reaction"] = {"emoji": emoji[:64], "removed": bool(reaction.get("isRemove"))}
        if target_author is not None and isinstance(target, int):
            message["reply_to_external_id"] = message_key(target_author, target)
            message["target_external_id"] = message["reply_to_external_id"]
        return _compact(message)

    text = data.get("message") if isinstance(data.get("message"), str) else None
    if text:
        text = _with_mentions(text, data.get("mentions"))[:MAX_TEXT]
    attachments = _attachments(data)
    if not text and not attachments:
        sticker = data.get("sticker")
        if not isinstance(sticker, dict):
            return None
        sticker_emoji = sticker.get("emoji") if isinstance(sticker.get("emoji"), str) else ""
        text = f"[sticker {sticker_emoji}]".replace(" ]", "]")
    message["text"] = text or None
    message["attachments"] = attachments
    message["event_type"] = event_type
    quote = data.get("quote")
    if replaces is not None:
        message["reply_to_external_id"] = replaces
        message["target_external_id"] = replaces
    elif isinstance(quote, dict) and isinstance(quote.get("id"), int):
        quoted_author = _author(quote.get("authorNumber"), quote.get("authorUuid"))
        if quoted_author is not None:
            message["reply_to_external_id"] = message_key(quoted_author, quote["id"])
    return _compact(message)


def translate_receive(params: Any) -> dict[str, Any] | None:
    """The `params` of a `receive` notification (what the SSE stream's `data:` holds) → a message or None."""
    if not isinstance(params, dict):
        return None
    if isinstance(params.get("result"), dict):  # the subscribeReceive form wraps it once more
        params = params["result"]
    return translate_envelope(params.get("envelope"))


def _compact(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if value is not None}
