"""Message actions beyond `send`: edit, delete, react, typing. Each is a Protocol of its own.

A connector offers an action by having its method (a callable attribute), found the way
`chatbox.ports.platforms` finds a webhook connector, so a platform lacking one simply lacks the tool:
Slack's Web API has no typing indicator for bots, so a Slack connector has no `send_typing`.

Message references are the platform ids chatbox stored (`Message.external_id`): Telegram
`"{chat}:{message}"`, Slack `ts`, Discord snowflakes, Signal `"{author}:{timestamp}"`.

Example:
    ```python
    connector = runtime.platforms.connector("telegram")
    if supports(connector, REACT):
        connector.react(ctx, MessageRef(chat_id="-100123", message_id="-100123:42"), "👍", remove=False)
    ```

Every method raises what `Connector.send` raises: PlatformRefusedError (the platform said no: a message too
old to edit, an emoji it does not accept), RateLimitedError, ConnectorUnavailableError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeGuard

from chatbox.ports.connector import ConnectionContext

EDIT = "edit_message"
DELETE = "delete_message"
REACT = "react"
TYPING = "send_typing"
ACTIONS = (EDIT, DELETE, REACT, TYPING)


@dataclass(frozen=True)
class MessageRef:
    """A message on the platform: its chat's platform id and the message's platform id as chatbox stored it."""

    chat_id: str
    message_id: str


class MessageEditor(Protocol):
    def edit_message(self, ctx: ConnectionContext, target: MessageRef, text: str) -> None: ...


class MessageDeleter(Protocol):
    def delete_message(self, ctx: ConnectionContext, target: MessageRef) -> None: ...


class Reactor(Protocol):
    def react(self, ctx: ConnectionContext, target: MessageRef, emoji: str, *, remove: bool) -> None: ...


class TypingIndicator(Protocol):
    def send_typing(self, ctx: ConnectionContext, chat_id: str) -> None: ...


def supports(connector: object, action: str) -> bool:
    """Whether the connector offers the action (one of ACTIONS)."""
    return callable(getattr(connector, action, None))


def is_editor(connector: object) -> TypeGuard[MessageEditor]:
    return supports(connector, EDIT)


def is_deleter(connector: object) -> TypeGuard[MessageDeleter]:
    return supports(connector, DELETE)


def is_reactor(connector: object) -> TypeGuard[Reactor]:
    return supports(connector, REACT)


def is_typing_indicator(connector: object) -> TypeGuard[TypingIndicator]:
    return supports(connector, TYPING)
