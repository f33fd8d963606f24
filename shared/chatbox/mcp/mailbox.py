"""The per-mailbox MCP server: `/mcp/{mailbox_id}`, bearer = the mailbox's MCP token.

One endpoint serves every mailbox. A request is authenticated first (`chatbox.mcp.endpoint`), then
served by a server built for that mailbox: its instructions explain focal attention and name the
mailbox's platforms; its tools (`chatbox.mcp.tools`) are the common ones plus the platform tools
of the platforms the mailbox has an active connection on.

Example:
    ```python
    Route("/mcp/{mailbox_id}", endpoint=mailbox_endpoint(runtime), methods=MCP_METHODS)  # see chatbox.mcp.routes
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

from chatbox.mcp.action_tools import action_notes
from chatbox.mcp.endpoint import McpEndpoint, transport_security
from chatbox.mcp.registration import ServedTool, ToolTable
from chatbox.mcp.tools import ToolContext, Toolset, ToolSpec
from chatbox.runtime import Runtime
from chatbox.services import focus


@dataclass(frozen=True)
class MailboxIdentity:
    """The mailbox a request authenticated as, with the platforms it has an active connection on."""

    id: str
    name: str
    platforms: frozenset[str]


def mailbox_instructions(identity: MailboxIdentity) -> str:
    """The `instructions` an MCP client adds to the agent's system prompt: the focal-attention paradigm."""
    if identity.platforms:
        platforms = ", ".join(sorted(identity.platforms))
        platform_line = (
            f"This mailbox ({identity.name}) is connected to: {platforms}. Besides send_message, each has its own "
            "tool (" + ", ".join(f"{p}_send" for p in sorted(identity.platforms)) + ") for platform options."
        )
    else:
        platform_line = (
            f"This mailbox ({identity.name}) has no platform connected yet, so no chats will appear until an "
            "operator connects one."
        )
    return (
        "You are reachable on messaging platforms through chatbox, which works by focal attention: "
        "exactly one chat at a time is your focal chat, the conversation you are in.\n\n"
        "New messages on the focal chat are delivered to you in full as they arrive. Messages on any other chat "
        "arrive as a short notification that names the chat and lists all chats with their unread counts; "
        "they are not a conversation you are in until you switch to it.\n\n"
        "How to work: call list_chats to see the chats (ids look like `<platform>:<external_id>`), "
        "switch_chat(chat_id) to focus on one - it marks the chat read and returns a recap of its latest "
        "messages - and send_message(text) to answer in the focal chat (pass chat_id to send elsewhere without "
        "switching). read_chat pages through a chat's history without moving focus; get_focus tells you where "
        "you are. When a notification matters more than the current conversation, switch to that chat before "
        "answering it.\n\n"
        "Attachments arrive with an id (`att_…`): read_attachment(attachment_id) opens one (images as images); "
        "send_file sends a file by url or base64.\n\n"
        "Sending safely: give every send_message (and <platform>_send, send_file) call an idempotency_key of your "
        "own, e.g. a fresh UUID per message, and when a send fails, times out or answers `unknown_outcome`, "
        "retry with the same key: chatbox then never posts the message twice (it answers the first result, or "
        "sends only the parts of a long message that are missing). `unknown_outcome` means the platform may have "
        "posted it and chatbox could not tell; never resend it under a new key without checking first.\n\n"
        + platform_line
    )


def served_tool(spec: ToolSpec, context: ToolContext) -> ServedTool:
    """A mailbox tool bound to its mailbox. Sends reach outside chatbox (open world); nothing here destroys."""
    return ServedTool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_model=spec.input_model,
        call=partial(spec.run, context),
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=spec.read_only,
            destructive_hint=False,
            open_world_hint=spec.platform is not None or spec.name in ("send_message", "send_file", "read_attachment"),
        ),
    )


def build_mailbox_server(runtime: Runtime, toolset: Toolset, identity: MailboxIdentity) -> Server[Any]:
    """A low-level MCP server for one authenticated mailbox (cheap: built per request)."""
    context = ToolContext(runtime=runtime, mailbox_id=identity.id, mailbox_name=identity.name)
    served = toolset.for_mailbox(identity.platforms)
    offered = {spec.name for spec in served}
    # A platform tool the mailbox lacks is named as such, so the agent learns why rather than "unknown tool".
    unavailable = {
        spec.name: f"{spec.name} is not available: this mailbox has no active {spec.platform} connection. "
        "Use send_message, or call list_chats to see which platforms have chats."
        for spec in toolset.tools
        if spec.platform is not None and spec.name not in offered
    }
    unavailable.update(
        {
            spec.name: f"{spec.name} is not available: none of this mailbox's platforms "
            f"({', '.join(sorted(identity.platforms)) or 'none connected'}) offers it through chatbox."
            for spec in toolset.tools
            if spec.capability is not None and spec.name not in offered
        }
    )
    table = ToolTable(
        [served_tool(spec, context) for spec in served], caller=f"mailbox {identity.id}", unavailable=unavailable
    )
    instructions = mailbox_instructions(identity) + action_notes(toolset.platforms, identity.platforms)
    return table.server("chatbox", title=f"chatbox mailbox {identity.name}", instructions=instructions)


def mailbox_endpoint(runtime: Runtime) -> McpEndpoint[MailboxIdentity]:
    """The endpoint behind `/mcp/{mailbox_id}`: the bearer must be that mailbox's MCP token."""

    def authenticate(path_params: Mapping[str, Any], token: str) -> MailboxIdentity:
        with runtime.db.session() as db:
            mailbox = focus.authenticate_mailbox(db, str(path_params.get("mailbox_id", "")), token)
            return MailboxIdentity(mailbox.id, mailbox.name, frozenset(focus.active_platforms(db, mailbox.id)))

    return McpEndpoint(
        realm="chatbox-mcp",
        credential="mcp_token",
        authenticate=authenticate,
        # The platform send tools are derived from the registry once per endpoint, not per request.
        build_server=partial(build_mailbox_server, runtime, Toolset(runtime.platforms)),
        security=lambda: transport_security(runtime.settings),
        throttle=runtime.auth_throttle,
        # Failures count per (client, mailbox): guessing one mailbox's token, never locking its owner out.
        throttle_target=lambda path_params, _token: f"mcp:{path_params.get('mailbox_id', '')}",
    )
