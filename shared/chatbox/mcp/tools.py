"""The mailbox MCP server's tools: typed inputs, the service each calls, and the text an agent reads.

Every tool runs in a worker thread (the services are synchronous SQLAlchemy) and answers with a
readable text block plus the same facts as `structuredContent`. Every failure becomes a tool error
(`isError`) whose message says what to do next; see `chatbox.mcp.registration.ERROR_ADVICE` for the
one table from error types to advice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from chatbox.domain.untrusted import MAX_TEXT
from chatbox.ports.platforms import PlatformRegistry, PlatformSpec
from chatbox.runtime import Runtime
from chatbox.services import focus, sending

log = logging.getLogger(__name__)

PlatformName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
ChatAddress = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
ExternalRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=sending.MAX_IDEMPOTENCY_KEY)]
IDEMPOTENCY_HELP = (
    "A key of your choice (up to 255 characters, e.g. a UUID) naming this message. Pass one, and pass the same "
    "key when you retry after an error or a timeout: within 24 hours the same key never posts a second message "
    "(it answers the first send's result, or sends only the parts still missing). Use a new key for a new message."
)
CHAT_ID_HELP = "The chat id exactly as list_chats shows it: `<platform>:<external_id>`, e.g. `telegram:-1001234567`."


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListChatsInput(_Input):
    platform: PlatformName | None = Field(default=None, description="Only chats on this platform.")
    include_muted: bool = Field(default=False, description="Also list muted chats (the focal chat is always listed).")


class SwitchChatInput(_Input):
    chat_id: ChatAddress | None = Field(description=CHAT_ID_HELP + " Pass null to clear the focus.")


class GetFocusInput(_Input):
    pass


class ReadChatInput(_Input):
    chat_id: ChatAddress = Field(description=CHAT_ID_HELP)
    before: str | None = Field(
        default=None, max_length=64, description="A message id (`msg_…`): return only older messages (paging)."
    )
    limit: int = Field(default=focus.DEFAULT_RECAP, ge=1, le=focus.MAX_PAGE, description="How many messages.")


class SendMessageInput(_Input):
    text: MessageText = Field(description="The message to send, as plain text.")
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_ID_HELP + " Default: the focal chat.")
    reply_to: ExternalRef | None = Field(
        default=None, description="The platform id (`external_id`) of a message in that chat to reply to."
    )
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description=IDEMPOTENCY_HELP,
    )


@dataclass(frozen=True)
class ToolContext:
    runtime: Runtime
    mailbox_id: str
    mailbox_name: str


@dataclass(frozen=True)
class ToolOutput:
    text: str
    structured: dict[str, Any]
    content: tuple[Any, ...] = ()  # MCP content blocks after the text (read_attachment's image or resource)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    run: Callable[[ToolContext, Any], ToolOutput]
    read_only: bool
    platform: str | None = None  # listed only when the mailbox has an active connection on it
    # Listed only when a platform of the mailbox offers it: an action of `chatbox.ports.message_actions`, or
    # `media` (`chatbox.mcp.media_tools`).
    capability: str | None = None

    def input_schema(self) -> dict[str, Any]:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        return schema


# --- readable output -------------------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def _chat_label(chat: focus.ChatSummary) -> str:
    return f"{chat.name} ({chat.id})" if chat.name else chat.id


def _chat_line(chat: focus.ChatSummary) -> str:
    flags = [chat.type, f"{chat.unread} unread"] + (["muted"] if chat.muted else [])
    line = f"{'*' if chat.focal else '-'} {_chat_label(chat)} [{chat.platform}; {', '.join(flags)}]"
    if chat.last_message_preview is not None:
        who = "you" if chat.last_message_direction == "out" else "them"
        line += f"\n    last {_when(chat.last_message_at)} ({who}): {chat.last_message_preview}"
    return line


def _json_chat(chat: focus.ChatSummary | None) -> dict[str, Any] | None:
    if chat is None:
        return None
    data = asdict(chat)
    data["last_message_at"] = chat.last_message_at.isoformat() if chat.last_message_at else None
    return data


def _json_message(message: focus.MessageView) -> dict[str, Any]:
    data = asdict(message)
    data["at"] = message.at.isoformat()
    return data


def _lines(messages: list[focus.MessageView]) -> str:
    return "\n".join(m.line() for m in messages) if messages else "(no messages yet)"


# --- the tools -------------------------------------------------------------------------------


def run_list_chats(ctx: ToolContext, args: ListChatsInput) -> ToolOutput:
    if args.platform is not None:
        ctx.runtime.platforms.spec(args.platform)  # an unknown platform is an error, not an empty list
    with ctx.runtime.db.session() as db:
        chats = focus.list_chats(db, ctx.mailbox_id, platform=args.platform, include_muted=args.include_muted)
    if not chats:
        text = "No chats yet. A chat appears here once someone writes to this mailbox on a connected platform."
    else:
        header = f"{len(chats)} chat(s), most recent first (* = focal):"
        text = "\n".join([header, *(_chat_line(c) for c in chats)])
        if not any(c.focal for c in chats):
            text += "\nNo chat is focal: call switch_chat with one of these ids to focus on it."
    return ToolOutput(text, {"chats": [_json_chat(c) for c in chats]})


def run_switch_chat(ctx: ToolContext, args: SwitchChatInput) -> ToolOutput:
    recap = ctx.runtime.settings.mcp_recap_messages
    with ctx.runtime.db.session() as db:
        result = focus.switch_chat(db, ctx.mailbox_id, args.chat_id, recap=recap)
    if result.chat is None:
        text = "Focus cleared. Every inbound message now arrives as a notification with the chat list."
    else:
        text = (
            f"Focus is now on {_chat_label(result.chat)}, a {result.chat.type} chat on {result.chat.platform}. "
            "Its new messages arrive in full; send_message without chat_id answers here.\n\n"
            f"Last {len(result.recap)} message(s), oldest first:\n{_lines(result.recap)}"
        )
    return ToolOutput(text, {"focus": _json_chat(result.chat), "recap": [_json_message(m) for m in result.recap]})


def run_get_focus(ctx: ToolContext, _args: GetFocusInput) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        chat = focus.get_focus(db, ctx.mailbox_id)
    if chat is None:
        text = "No chat is focal. Call list_chats, then switch_chat to focus on one."
    else:
        text = f"Focal chat: {_chat_line(chat)}"
    return ToolOutput(text, {"focus": _json_chat(chat)})


def run_read_chat(ctx: ToolContext, args: ReadChatInput) -> ToolOutput:
    links = ctx.runtime.attachment_links
    with ctx.runtime.db.session() as db:
        page = focus.read_chat(db, ctx.mailbox_id, args.chat_id, before=args.before, limit=args.limit, links=links)
    text = f"{_chat_label(page.chat)}: {len(page.messages)} message(s), oldest first:\n{_lines(page.messages)}"
    if page.next_before:
        text += f"\nOlder messages exist: call read_chat with before={page.next_before}."
    return ToolOutput(
        text,
        {
            "chat": _json_chat(page.chat),
            "messages": [_json_message(m) for m in page.messages],
            "next_before": page.next_before,
        },
    )


def _send(ctx: ToolContext, args: SendMessageInput, platform: str | None, options: Mapping[str, Any]) -> ToolOutput:
    with ctx.runtime.db.session() as db:
        sent = sending.send_message(
            db,
            ctx.runtime.vault,
            ctx.runtime.platforms,
            ctx.mailbox_id,
            args.text,
            chat=args.chat_id,
            reply_to=args.reply_to,
            platform=platform,
            options=options,
            idempotency_key=args.idempotency_key,
        )
    text = f"Sent to {sent.chat_id} (platform message id {sent.external_id})"
    if len(sent.part_ids) > 1:
        text += f", as {len(sent.part_ids)} parts: {', '.join(sent.part_ids)}"
    if sent.replayed:
        text += "; this idempotency_key was already sent, so nothing new was posted"
    return ToolOutput(
        text + ".",
        {
            "chat_id": sent.chat_id,
            "message_id": sent.message_id,
            "external_id": sent.external_id,
            "part_ids": list(sent.part_ids),
            "already_sent": sent.replayed,
        },
    )


def run_send_message(ctx: ToolContext, args: SendMessageInput) -> ToolOutput:
    return _send(ctx, args, None, {})


_PLATFORM_SEND = (
    "Send a {label} message with {label}'s own options. chat_id defaults to the focal chat and must be a "
    "{platform} chat (a bare {label} chat id is accepted too). Returns the platform's message id. Pass an "
    "idempotency_key and reuse it on retries: a retry never posts twice."
)

COMMON_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "list_chats",
        "List chats",
        "List this mailbox's chats, most recently active first: id (`<platform>:<external_id>`), name, type, "
        "unread count, the last message with its time, which one is focal, and which are muted. "
        "Use it to find the chat_id for switch_chat, read_chat and send_message.",
        ListChatsInput,
        run_list_chats,
        read_only=True,
    ),
    ToolSpec(
        "switch_chat",
        "Switch the focal chat",
        "Make a chat the focal one: its new messages then arrive in full, every other chat arrives as a short "
        "notification. Marks the chat read and returns a recap of its latest messages (both sides, with sender "
        "and time). Pass chat_id null to clear the focus.",
        SwitchChatInput,
        run_switch_chat,
        read_only=False,
    ),
    ToolSpec(
        "get_focus",
        "Get the focal chat",
        "Which chat is focal right now (or that none is), with its unread count and last message.",
        GetFocusInput,
        run_get_focus,
        read_only=True,
    ),
    ToolSpec(
        "read_chat",
        "Read a chat's history",
        "Read a chat's messages, oldest first, without changing the focus or marking anything read. "
        "Page back with `before` set to the `next_before` of the previous answer.",
        ReadChatInput,
        run_read_chat,
        read_only=True,
    ),
    ToolSpec(
        "send_message",
        "Send a message",
        "Send a text message to the focal chat, or to chat_id when given, through that chat's platform. "
        "reply_to quotes a message by its platform id (`external_id` in read_chat). The message is recorded, "
        "so recaps show your side too. Returns the platform's message id (and each part's, when a long text "
        "goes out in parts). Pass an idempotency_key and reuse it on retries: a retry never posts twice. "
        "An `unknown_outcome` error means the platform may have posted it: retry with the same key, never a new one.",
        SendMessageInput,
        run_send_message,
        read_only=False,
    ),
)


def platform_send_tool(spec: PlatformSpec) -> ToolSpec:
    """`<platform>_send`: send_message's arguments plus the platform's send options (its spec's model)."""
    input_model = create_model(
        f"{spec.name.title().replace('_', '')}SendInput", __base__=(SendMessageInput, spec.send_options)
    )
    option_names = set(spec.send_options.model_fields)

    def run(ctx: ToolContext, args: SendMessageInput) -> ToolOutput:
        # A bare external id is read as a chat of the tool's own platform.
        if args.chat_id is not None and ":" not in args.chat_id:
            args.chat_id = f"{spec.name}:{args.chat_id}"
        return _send(ctx, args, spec.name, args.model_dump(include=option_names))

    description = _PLATFORM_SEND.format(label=spec.label, platform=spec.name)
    return ToolSpec(
        f"{spec.name}_send",
        f"Send on {spec.label}",
        f"{description} {spec.send_notes}".strip(),
        input_model,
        run,
        read_only=False,
        platform=spec.name,
    )


class Toolset:
    """The mailbox tools of one process: the common ones, and one send tool per registered platform."""

    def __init__(self, platforms: PlatformRegistry) -> None:
        from chatbox.mcp.action_tools import ACTION_TOOLS
        from chatbox.mcp.media_tools import MEDIA_TOOLS  # builds on this module's ToolSpec

        self.tools = (
            COMMON_TOOLS + ACTION_TOOLS + MEDIA_TOOLS + tuple(platform_send_tool(spec) for spec in platforms.specs())
        )
        self.by_name = {tool.name: tool for tool in self.tools}
        self.platforms = platforms
        # Which actions each platform's connector offers, learned when a mailbox first needs it: building a
        # connector loads its SDK, which a cold start should pay only for the platforms it serves.
        self._actions: dict[str, frozenset[str]] = {}

    def actions_of(self, platform: str) -> frozenset[str]:
        """The capabilities the platform's connector offers here: its message actions, and `media`."""
        from chatbox.mcp.action_tools import platform_actions
        from chatbox.mcp.media_tools import MEDIA, has_media

        if platform not in self._actions:
            media = {MEDIA} if has_media(self.platforms, platform) else set()
            self._actions[platform] = platform_actions(self.platforms, platform) | media
        return self._actions[platform]

    def for_mailbox(self, platforms: frozenset[str]) -> list[ToolSpec]:
        """The tools a mailbox sees: the common ones, `<platform>_send` for each connected platform, and each
        action or media tool some connected platform offers."""
        offered = {action for name in platforms if self.platforms.get(name) for action in self.actions_of(name)}
        return [
            tool
            for tool in self.tools
            if (tool.platform is None or tool.platform in platforms)
            and (tool.capability is None or tool.capability in offered)
        ]

    def get(self, name: str) -> ToolSpec | None:
        return self.by_name.get(name)
