"""The per-mailbox MCP server over streamable HTTP: `/mcp/{mailbox_id}`, bearer = the mailbox's MCP token.

One app serves every mailbox. Each request is authenticated first (401 before any MCP processing),
then handed to a fresh stateless, JSON-response session manager around a low-level server built
for that mailbox (its instructions name the mailbox's platforms; its tool list holds the platform
tools the mailbox has). Stateless mode keeps that cheap, serves both protocol eras (2026-07-28's
`server/discover` and the older `initialize`), and works the same under uvicorn and Mangum, where
a manager's single-use `run()` rules out one long-lived manager.

Example:
    ```python
    app = Starlette(routes=mcp_routes(runtime))  # or create_app(runtime), which includes them
    ```
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from chatbox import __version__
from chatbox.domain.errors import AuthenticationError, ChatboxError
from chatbox.mcp.tools import (
    ToolContext,
    ToolOutput,
    Toolset,
    describe_error,
    describe_validation_error,
)
from chatbox.runtime import Runtime
from chatbox.services import focus

log = logging.getLogger(__name__)

MCP_METHODS = ["GET", "POST", "DELETE"]


@dataclass(frozen=True)
class MailboxIdentity:
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
        "answering it.\n\n" + platform_line
    )


def _result(output: ToolOutput) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=output.text)], structured_content=output.structured)


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def build_mailbox_server(runtime: Runtime, toolset: Toolset, identity: MailboxIdentity) -> Server[Any]:
    """A low-level MCP server for one authenticated mailbox (cheap: built per request)."""
    available = toolset.for_mailbox(identity.platforms)
    names = {tool.name for tool in available}
    context = ToolContext(runtime=runtime, mailbox_id=identity.id, mailbox_name=identity.name)

    async def list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    title=tool.title,
                    description=tool.description,
                    input_schema=tool.input_schema(),
                    annotations=types.ToolAnnotations(
                        title=tool.title,
                        read_only_hint=tool.read_only,
                        destructive_hint=False,
                        open_world_hint=tool.platform is not None or tool.name == "send_message",
                    ),
                )
                for tool in available
            ]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = toolset.get(params.name)
        if tool is None or tool.name not in names:
            if tool is not None and tool.platform is not None:
                return _tool_error(
                    f"{tool.name} is not available: this mailbox has no active {tool.platform} connection. "
                    "Use send_message, or call list_chats to see which platforms have chats."
                )
            return _tool_error(f"unknown tool {params.name!r}; available: {', '.join(sorted(names))}")
        try:
            arguments = tool.input_model.model_validate(params.arguments or {})
        except ValidationError as exc:
            return _tool_error(describe_validation_error(tool.name, exc))
        try:
            output = await anyio.to_thread.run_sync(tool.run, context, arguments)
        except ChatboxError as exc:
            return _tool_error(describe_error(exc))
        except Exception:
            log.exception("tool %s crashed for mailbox %s", tool.name, identity.id)
            return _tool_error(f"{tool.name} failed on chatbox's side (an internal error); try again shortly.")
        return _result(output)

    return Server(
        "chatbox",
        version=__version__,
        title=f"chatbox mailbox {identity.name}",
        instructions=mailbox_instructions(identity),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: tool.input_schema() if (tool := toolset.get(name)) else None,
    )


def transport_security(runtime: Runtime) -> TransportSecuritySettings:
    settings = runtime.settings
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.mcp_hosts(),
        allowed_origins=settings.mcp_origins(),
    )


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the Authorization header, or None when absent or of another scheme."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


async def send_json_error(send: Send, status: int, code: str, message: str, headers: dict[str, str]) -> None:
    payload = json.dumps({"code": code, "message": message}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


class MailboxMcpEndpoint:
    """The ASGI endpoint behind `/mcp/{mailbox_id}`: authenticate, then serve MCP for that mailbox."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.security = transport_security(runtime)
        self.toolset = Toolset(runtime.platforms)

    def _authenticate(self, mailbox_id: str, token: str) -> MailboxIdentity:
        with self.runtime.db.session() as db:
            mailbox = focus.authenticate_mailbox(db, mailbox_id, token)
            return MailboxIdentity(mailbox.id, mailbox.name, frozenset(focus.active_platforms(db, mailbox.id)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mailbox_id = str(scope.get("path_params", {}).get("mailbox_id", ""))
        token = bearer_token(scope)
        challenge = {"WWW-Authenticate": 'Bearer realm="chatbox-mcp"'}
        if token is None:
            await send_json_error(
                send, 401, "unauthorized", "missing bearer token: send `Authorization: Bearer <mcp_token>`", challenge
            )
            return
        try:
            identity = await anyio.to_thread.run_sync(self._authenticate, mailbox_id, token)
        except AuthenticationError as exc:
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            await send_json_error(send, 401, exc.code, exc.message, challenge)
            return
        except Exception:  # the database is unreachable or similar: say so rather than crash with a 500
            log.exception("cannot authenticate an MCP request for mailbox %s", mailbox_id)
            await send_json_error(send, 503, "unavailable", "chatbox cannot serve this request now; retry", {})
            return
        await serve_stateless(
            build_mailbox_server(self.runtime, self.toolset, identity), self.security, scope, receive, send
        )


async def serve_stateless(
    server: Server[Any], security: TransportSecuritySettings, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one request with a fresh stateless, JSON-response session manager (its `run()` is single-use)."""
    manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True, security_settings=security)
    async with manager.run():
        await manager.handle_request(scope, receive, send)


def mcp_routes(runtime: Runtime) -> list[BaseRoute]:
    """The MCP routes; the bare path and a trailing slash are both served (no redirect)."""
    from chatbox.mcp.admin import AdminMcpEndpoint

    endpoint = MailboxMcpEndpoint(runtime)
    admin = AdminMcpEndpoint(runtime)
    return [
        Route("/mcp/admin/{account_id}", endpoint=admin, methods=MCP_METHODS, include_in_schema=False),
        Route("/mcp/admin/{account_id}/", endpoint=admin, methods=MCP_METHODS, include_in_schema=False),
        Route("/mcp/{mailbox_id}", endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
        Route("/mcp/{mailbox_id}/", endpoint=endpoint, methods=MCP_METHODS, include_in_schema=False),
    ]
