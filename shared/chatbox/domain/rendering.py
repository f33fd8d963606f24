"""Mailbox templates: `$VARIABLE` placeholders (string.Template syntax) rendered per delivery.

Which template renders an event:
- on the mailbox's focal chat: `focal_<event_type>`, falling back to `focal_message`;
- on any other chat: `notification_<event_type>`, falling back to `notification`;
- `ephemeral`, when set, renders into the webhook's sibling `ephemeral` field.
A mailbox without templates uses the defaults below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template

from chatbox.domain.errors import InvalidInputError

VARIABLES: dict[str, str] = {
    "TEXT": "the message text (captions included); empty for attachment-only messages",
    "SENDER_NAME": "the sender's display name (falls back to the sender id)",
    "SENDER_ID": "the sender's platform id",
    "CHAT_ID": "the chat address, `<platform>:<external_id>`",
    "CHAT_NAME": "the chat's name (falls back to the chat address)",
    "CHAT_TYPE": "direct, group or channel",
    "PLATFORM": "signal, telegram, discord or slack",
    "TIMESTAMP": "when the message was sent (ISO 8601, UTC)",
    "UNREAD": "unread messages in this chat",
    "CHAT_LIST": "every chat with its unread count, the focal one marked",
    "EVENT_TYPE": "message, edit, reaction, ...",
    "MESSAGE_ID": "chatbox's id of the message",
    "EXTERNAL_MESSAGE_ID": "the platform's id of the message",
    "REPLY_TO": "the platform id of the message this one replies to (empty if none)",
    "ATTACHMENTS": "one line per attachment, `[kind name]`, empty if none",
    "MAILBOX_NAME": "the mailbox's name",
    "TARGET_MESSAGE_ID": "edit, delete, reaction: chatbox's id (`msg_…`) of the message concerned (empty if unknown)",
    "TARGET_EXTERNAL_ID": "edit, delete, reaction: the platform's id of the message concerned",
    "TARGET_TEXT": "edit, delete, reaction: that message's text (for an edit: before it), shortened (or empty)",
    "TARGET": 'edit, delete, reaction: that message in words, e.g. `your message "see you at 5"`, `their message`',
    "EMOJI": "reaction: the emoji (a platform's name for it on Slack, e.g. `:thumbsup:`)",
    "REACTION": "reaction: `reacted 👍 to` or `removed their 👍 reaction from`",
}

_NOTIFICATION_FOOTER = "\nUse switch_chat to focus on it.\n\n$CHAT_LIST"

DEFAULT_TEMPLATES: dict[str, str] = {
    "focal_message": "$SENDER_NAME: $TEXT$ATTACHMENTS",
    "focal_edit": "$SENDER_NAME edited $TARGET. It now reads: $TEXT$ATTACHMENTS",
    "focal_delete": "$SENDER_NAME deleted $TARGET.",
    "focal_reaction": "$SENDER_NAME $REACTION $TARGET.",
    "notification": "New $EVENT_TYPE in $CHAT_NAME ($CHAT_ID) from $SENDER_NAME: $TEXT$ATTACHMENTS"
    + _NOTIFICATION_FOOTER,
    "notification_edit": "In $CHAT_NAME ($CHAT_ID), $SENDER_NAME edited $TARGET. It now reads: $TEXT$ATTACHMENTS"
    + _NOTIFICATION_FOOTER,
    "notification_delete": "In $CHAT_NAME ($CHAT_ID), $SENDER_NAME deleted $TARGET." + _NOTIFICATION_FOOTER,
    "notification_reaction": "In $CHAT_NAME ($CHAT_ID), $SENDER_NAME $REACTION $TARGET." + _NOTIFICATION_FOOTER,
}

TEMPLATE_NAME = re.compile(r"^(focal_[a-z][a-z0-9_]*|notification(_[a-z][a-z0-9_]*)?|ephemeral)$")


def validate_templates(templates: Mapping[str, str]) -> None:
    """Refuse unknown template names, malformed placeholders and unknown variables (InvalidInputError)."""
    for name, text in templates.items():
        if not TEMPLATE_NAME.match(name):
            raise InvalidInputError(
                f"templates.{name}: unknown template name; use focal_message, notification, ephemeral, "
                "or focal_<event_type> / notification_<event_type>"
            )
        template = Template(text)
        if not template.is_valid():
            raise InvalidInputError(f"templates.{name}: malformed placeholder (write $$ for a literal $)")
        for variable in template.get_identifiers():
            if variable not in VARIABLES:
                raise InvalidInputError(
                    f"templates.{name}: unknown variable ${variable}; known: " + ", ".join(f"${v}" for v in VARIABLES)
                )


def pick_template(templates: Mapping[str, str], *, focal: bool, event_type: str) -> str:
    base = "focal" if focal else "notification"
    fallback = "focal_message" if focal else "notification"
    for name in (f"{base}_{event_type}", fallback):
        if name in templates:
            return templates[name]
    for name in (f"{base}_{event_type}", fallback):
        if name in DEFAULT_TEMPLATES:
            return DEFAULT_TEMPLATES[name]
    raise AssertionError("the defaults define both fallbacks")


@dataclass(frozen=True)
class ChatLine:
    address: str
    name: str | None
    unread: int
    focal: bool
    muted: bool = False


def render_chat_list(chats: list[ChatLine]) -> str:
    """The chat list footer: one line per chat, the focal one marked."""
    if not chats:
        return "Chats: none yet."
    lines = ["Chats:"]
    for chat in chats:
        marker = "* " if chat.focal else "- "
        label = f"{chat.name} ({chat.address})" if chat.name else chat.address
        details = [f"{chat.unread} unread"] + (["focal"] if chat.focal else []) + (["muted"] if chat.muted else [])
        lines.append(f"{marker}{label}: {', '.join(details)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Rendered:
    content: str
    ephemeral: str | None = None


def render(templates: Mapping[str, str], *, focal: bool, event_type: str, variables: Mapping[str, str]) -> Rendered:
    """Render the content (and the ephemeral field when that template is set)."""
    content = Template(pick_template(templates, focal=focal, event_type=event_type)).safe_substitute(variables)
    ephemeral = templates.get("ephemeral")
    return Rendered(
        content=content,
        ephemeral=Template(ephemeral).safe_substitute(variables) if ephemeral is not None else None,
    )
