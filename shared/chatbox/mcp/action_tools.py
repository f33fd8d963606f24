"""The message-action tools: edit_message, delete_message, react, typing.

Each is listed for a mailbox only when one of its platforms' connectors offers the action
(`chatbox.ports.message_actions`); the instructions name what each connected platform lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, StringConstraints

from chatbox.domain.errors import ChatboxError
from chatbox.mcp.tools import CHAT_ID_HELP, ChatAddress, MessageText, ToolContext, ToolOutput, ToolSpec, _Input
from chatbox.ports.message_actions import ACTIONS, DELETE, EDIT, REACT, TYPING, supports
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services import message_actions

MessageId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
MESSAGE_ID_HELP = (
    "The message's id as read_chat and webhooks show it (`msg_…`), or its platform id (`external_id`) in chat_id's "
    "chat."
)
CHAT_HELP = CHAT_ID_HELP + " Only needed with a platform id; default: the focal chat."


class EditMessageInput(_Input):
    message_id: MessageId = Field(description=MESSAGE_ID_HELP)
    text: MessageText = Field(description="The message's new text, in full.")
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_HELP)


class DeleteMessageInput(_Input):
    message_id: MessageId = Field(description=MESSAGE_ID_HELP)
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_HELP)


class ReactInput(_Input):
    message_id: MessageId = Field(description=MESSAGE_ID_HELP)
    emoji: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = Field(
        description="One emoji, e.g. 👍 (Slack also takes its name, e.g. thumbsup)."
    )
    remove: bool = Field(default=False, description="Take back your reaction with this emoji instead of adding it.")
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_HELP)


class TypingInput(_Input):
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_ID_HELP + " Default: the focal chat.")


def run_edit_message(ctx: ToolContext, args: EditMessageInput) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        done = message_actions.edit_message(
            db, ctx.runtime.vault, ctx.runtime.platforms, ctx.mailbox_id, args.message_id, args.text, chat=args.chat_id
        )
    return ToolOutput(
        f"Edited {done.message_id} in {done.chat_id}.",
        {"chat_id": done.chat_id, "message_id": done.message_id, "external_id": done.external_id},
    )


def run_delete_message(ctx: ToolContext, args: DeleteMessageInput) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        done = message_actions.delete_message(
            db, ctx.runtime.vault, ctx.runtime.platforms, ctx.mailbox_id, args.message_id, chat=args.chat_id
        )
    return ToolOutput(
        f"Deleted {done.message_id} in {done.chat_id} (read_chat still lists it, marked deleted).",
        {"chat_id": done.chat_id, "message_id": done.message_id, "external_id": done.external_id},
    )


def run_react(ctx: ToolContext, args: ReactInput) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        done = message_actions.react(
            db,
            ctx.runtime.vault,
            ctx.runtime.platforms,
            ctx.mailbox_id,
            args.message_id,
            args.emoji,
            remove=args.remove,
            chat=args.chat_id,
        )
    verb = "Removed your" if args.remove else "Reacted"
    return ToolOutput(
        f"{verb} {args.emoji} {'reaction from' if args.remove else 'to'} {done.message_id} in {done.chat_id}.",
        {"chat_id": done.chat_id, "message_id": done.message_id, "emoji": args.emoji, "removed": args.remove},
    )


def run_typing(ctx: ToolContext, args: TypingInput) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        done = message_actions.send_typing(
            db, ctx.runtime.vault, ctx.runtime.platforms, ctx.mailbox_id, chat=args.chat_id
        )
    return ToolOutput(
        f"Showing typing in {done.chat_id} for a few seconds (call again for longer; your next message ends it).",
        {"chat_id": done.chat_id},
    )


ACTION_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "edit_message",
        "Edit one of your messages",
        "Replace the text of a message you sent (only your own). The chat sees it edited; read_chat shows the new "
        "text. Takes the message id from read_chat or send_message's answer.",
        EditMessageInput,
        run_edit_message,
        read_only=False,
        capability=EDIT,
    ),
    ToolSpec(
        "delete_message",
        "Delete one of your messages",
        "Delete a message you sent (only your own) for everyone in the chat. read_chat keeps it, marked deleted.",
        DeleteMessageInput,
        run_delete_message,
        read_only=False,
        capability=DELETE,
    ),
    ToolSpec(
        "react",
        "React to a message",
        "Add an emoji reaction to any message of a chat (yours or theirs), or take it back with remove=true. "
        "A short way to acknowledge without writing a message.",
        ReactInput,
        run_react,
        read_only=False,
        capability=REACT,
    ),
    ToolSpec(
        "typing",
        "Show that you are typing",
        "Show a typing indicator in a chat (default: the focal chat) for a few seconds, e.g. before a long answer. "
        "It clears by itself or when your next message arrives.",
        TypingInput,
        run_typing,
        read_only=False,
        capability=TYPING,
    ),
)


def platform_actions(platforms: PlatformRegistry, name: str) -> frozenset[str]:
    """The actions the platform's connector offers here (none when this process has no connector for it)."""
    try:
        connector = platforms.connector(name)
    except ChatboxError:
        return frozenset()
    return frozenset(action for action in ACTIONS if supports(connector, action))


def action_notes(platforms: PlatformRegistry, connected: Iterable[str]) -> str:
    """The instructions' paragraph: the tools, and per connected platform what it lacks or does differently."""
    lines = []
    for name in sorted(connected):
        if platforms.get(name) is None:
            continue
        offered = platform_actions(platforms, name)
        lacking = [message_actions.ACTION_WORDS[a] for a in ACTIONS if a not in offered]
        note = f"- {name}: no {', no '.join(lacking)}." if lacking else f"- {name}: all of them."
        extra = _connector_notes(platforms, name)
        lines.append(f"{note} {extra}".rstrip())
    if not lines:
        return ""
    return (
        "\n\nBesides sending you can edit_message and delete_message (your own messages), react to any message, "
        "and show typing; message ids are the `msg_…` ids of read_chat and webhooks. Edits, deletions and "
        "reactions by others arrive as events of those types. Per platform:\n" + "\n".join(lines)
    )


def _connector_notes(platforms: PlatformRegistry, name: str) -> str:
    try:
        notes = getattr(platforms.connector(name), "action_notes", None)
    except ChatboxError:
        return ""
    if callable(notes):
        notes = notes(name)
    return notes if isinstance(notes, str) else ""
