"""The per-account admin MCP server: `/mcp/admin/{account_id}`, bearer = an API key of that account.

Agents administer their own messaging surface with it: mailboxes and their delivery health,
connections, muting chats, templates (validated, with a preview), unpausing and redriving.
Another account's id answers 403 whatever the key; a wrong key answers 401.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.types import Receive, Scope, Send

from chatbox import __version__
from chatbox.domain.errors import AuthenticationError, ChatboxError
from chatbox.domain.rendering import VARIABLES, render, validate_templates
from chatbox.domain.schemas import MailboxUpdate
from chatbox.mcp.server import bearer_token, send_json_error, serve_stateless, transport_security
from chatbox.mcp.tools import describe_error, describe_validation_error
from chatbox.runtime import Runtime
from chatbox.services import accounts, connections, focus, mailboxes

log = logging.getLogger(__name__)

MailboxId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
ChatAddress = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=300)]

ADMIN_INSTRUCTIONS = (
    "This is chatbox's admin server for your account: it manages the mailboxes through which you are "
    "reachable on messaging platforms. list_mailboxes shows them; mailbox_health tells whether webhook "
    "deliveries reach you (a mailbox pauses itself after repeated failures - fix the receiver, then "
    "unpause_mailbox; redrive_dead_letters re-sends what gave up). mute_chat keeps a chat's messages out of "
    "the chat list; update_templates changes how messages are rendered to you (preview_template first)."
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoInput(_Input):
    pass


class MailboxInput(_Input):
    mailbox_id: MailboxId = Field(description="A mailbox id (`mbx_…`) from list_mailboxes.")


class ChatInput(MailboxInput):
    chat_id: ChatAddress = Field(description="The chat id as list_chats shows it: `<platform>:<external_id>`.")


class TemplatesInput(MailboxInput):
    templates: dict[str, str] = Field(
        description="The complete set of templates (replaces the current one): focal_message, notification, "
        "ephemeral, focal_<event_type>, notification_<event_type>. Variables: " + ", ".join(f"${v}" for v in VARIABLES)
    )


class PreviewInput(MailboxInput):
    templates: dict[str, str] | None = Field(
        default=None, description="Templates to preview; default: the mailbox's current templates."
    )
    focal: bool = Field(default=True, description="Render as the focal chat (focal_message) or not (notification).")
    event_type: str = Field(default="message", max_length=32, description="message, edit, reaction, ...")


class TailInput(MailboxInput):
    limit: int = Field(default=20, ge=1, le=200, description="How many of the latest deliveries.")


@dataclass(frozen=True)
class AdminTool:
    name: str
    description: str
    input_model: type[_Input]
    run: Callable[[Runtime, str, Any], dict[str, Any]]
    read_only: bool

    def input_schema(self) -> dict[str, Any]:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        return schema


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def run_list_mailboxes(runtime: Runtime, account_id: str, _args: NoInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        rows, _ = mailboxes.list_mailboxes(db, account_id, limit=200, cursor=None)
        return {
            "mailboxes": [
                {
                    "id": m.id,
                    "name": m.name,
                    "status": m.status,
                    "webhook_url": m.webhook_url,
                    "mcp_url": runtime.settings.mcp_url(m.id),
                }
                for m in rows
            ]
        }


def run_mailbox_health(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        return mailboxes.mailbox_health(db, account_id, args.mailbox_id).model_dump(mode="json")


def run_list_connections(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        rows, _ = connections.list_connections(db, account_id, args.mailbox_id, limit=200, cursor=None)
        return {
            "connections": [
                {"id": c.id, "platform": c.platform, "status": c.status, "created_at": _iso(c.created_at)} for c in rows
            ]
        }


def _set_muted(runtime: Runtime, account_id: str, args: ChatInput, muted: bool) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        chat = focus.find_chat(db, args.mailbox_id, args.chat_id)
        chat.muted = muted
        db.commit()
        return {"chat_id": chat.address, "muted": muted}


def run_mute_chat(runtime: Runtime, account_id: str, args: ChatInput) -> dict[str, Any]:
    return _set_muted(runtime, account_id, args, True)


def run_unmute_chat(runtime: Runtime, account_id: str, args: ChatInput) -> dict[str, Any]:
    return _set_muted(runtime, account_id, args, False)


def run_update_templates(runtime: Runtime, account_id: str, args: TemplatesInput) -> dict[str, Any]:
    update = MailboxUpdate(templates=args.templates)
    with runtime.db.session() as db:
        mailbox = mailboxes.update_mailbox(
            db, runtime.queue, account_id, args.mailbox_id, update, policy=runtime.address_policy
        )
        return {"mailbox_id": mailbox.id, "templates": mailbox.templates}


SAMPLE_VARIABLES = {
    "TEXT": "Are we still on for 3pm?",
    "SENDER_NAME": "Ada",
    "SENDER_ID": "4242",
    "CHAT_ID": "telegram:4242",
    "CHAT_NAME": "Ada",
    "CHAT_TYPE": "direct",
    "PLATFORM": "telegram",
    "TIMESTAMP": "2026-11-27T15:00:00+00:00",
    "UNREAD": "2",
    "CHAT_LIST": "Chats:\n* Ada (telegram:4242): 0 unread, focal\n- ops (slack:C024BE91L): 2 unread",
    "EVENT_TYPE": "message",
    "MESSAGE_ID": "msg_01JD3SAMPLE0000000000000000",
    "EXTERNAL_MESSAGE_ID": "4242:17",
    "REPLY_TO": "",
    "ATTACHMENTS": "",
    "MAILBOX_NAME": "agent",
}


def run_preview_template(runtime: Runtime, account_id: str, args: PreviewInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailbox = mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        templates = args.templates if args.templates is not None else mailbox.templates
    validate_templates(templates)
    variables = {**SAMPLE_VARIABLES, "EVENT_TYPE": args.event_type, "MAILBOX_NAME": mailbox.name}
    rendered = render(templates, focal=args.focal, event_type=args.event_type, variables=variables)
    return {"content": rendered.content, "ephemeral": rendered.ephemeral}


def run_unpause(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailbox = mailboxes.unpause_mailbox(db, runtime.queue, account_id, args.mailbox_id)
        return {"mailbox_id": mailbox.id, "status": mailbox.status}


def run_redrive(runtime: Runtime, account_id: str, args: MailboxInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        return {"requeued": mailboxes.redrive_mailbox(db, runtime.queue, account_id, args.mailbox_id)}


def run_tail_deliveries(runtime: Runtime, account_id: str, args: TailInput) -> dict[str, Any]:
    with runtime.db.session() as db:
        mailboxes.get_mailbox(db, account_id, args.mailbox_id)
        rows = mailboxes.recent_deliveries(db, args.mailbox_id, limit=args.limit)
        return {
            "deliveries": [
                {
                    "id": d.id,
                    "message_id": d.message_id,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "updated_at": _iso(d.updated_at),
                }
                for d in rows
            ]
        }


ADMIN_TOOLS: tuple[AdminTool, ...] = (
    AdminTool(
        "list_mailboxes",
        "Your account's mailboxes with status, webhook URL and MCP URL.",
        NoInput,
        run_list_mailboxes,
        True,
    ),
    AdminTool(
        "mailbox_health",
        "Delivery health: status, failure streak, delivered/pending/dead counts, last error.",
        MailboxInput,
        run_mailbox_health,
        True,
    ),
    AdminTool("list_connections", "The mailbox's platform connections.", MailboxInput, run_list_connections, True),
    AdminTool(
        "mute_chat",
        "Mute a chat: it leaves the chat list (its messages are still stored and delivered).",
        ChatInput,
        run_mute_chat,
        False,
    ),
    AdminTool("unmute_chat", "Unmute a chat.", ChatInput, run_unmute_chat, False),
    AdminTool(
        "update_templates",
        "Replace the mailbox's templates (validated; preview_template first).",
        TemplatesInput,
        run_update_templates,
        False,
    ),
    AdminTool(
        "preview_template",
        "Render templates on a sample message without changing anything.",
        PreviewInput,
        run_preview_template,
        True,
    ),
    AdminTool(
        "unpause_mailbox",
        "Resume a paused mailbox; held messages are sent, each chat in order.",
        MailboxInput,
        run_unpause,
        False,
    ),
    AdminTool(
        "redrive_dead_letters",
        "Re-send the mailbox's dead deliveries with a fresh set of attempts.",
        MailboxInput,
        run_redrive,
        False,
    ),
    AdminTool(
        "tail_deliveries", "The latest deliveries: status, attempts, last error.", TailInput, run_tail_deliveries, True
    ),
)
ADMIN_TOOLS_BY_NAME = {tool.name: tool for tool in ADMIN_TOOLS}


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def build_admin_server(runtime: Runtime, account_id: str) -> Server[Any]:
    """A low-level MCP server for one authenticated account (built per request; cheap)."""

    async def list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema(),
                    annotations=types.ToolAnnotations(read_only_hint=tool.read_only, destructive_hint=False),
                )
                for tool in ADMIN_TOOLS
            ]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = ADMIN_TOOLS_BY_NAME.get(params.name)
        if tool is None:
            return _error(f"unknown tool {params.name!r}; available: {', '.join(ADMIN_TOOLS_BY_NAME)}")
        try:
            arguments = tool.input_model.model_validate(params.arguments or {})
        except ValidationError as exc:
            return _error(describe_validation_error(tool.name, exc))
        try:
            result = await anyio.to_thread.run_sync(tool.run, runtime, account_id, arguments)
        except ChatboxError as exc:
            return _error(describe_error(exc))
        except Exception:
            log.exception("admin tool %s crashed for account %s", tool.name, account_id)
            return _error(f"{tool.name} failed on chatbox's side (an internal error); try again shortly.")
        text = json.dumps(result, indent=2, default=str)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=result)

    return Server(
        "chatbox-admin",
        version=__version__,
        instructions=ADMIN_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: (
            ADMIN_TOOLS_BY_NAME[name].input_schema() if name in ADMIN_TOOLS_BY_NAME else None
        ),
    )


class AdminMcpEndpoint:
    """The ASGI endpoint behind `/mcp/admin/{account_id}`: authenticate the API key, then serve MCP."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.security = transport_security(runtime)

    def _account_of(self, token: str) -> str:
        with self.runtime.db.session() as db:
            return accounts.authenticate_api_key(db, token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        account_id = str(scope.get("path_params", {}).get("account_id", ""))
        token = bearer_token(scope)
        challenge = {"WWW-Authenticate": 'Bearer realm="chatbox-admin-mcp"'}
        if token is None:
            await send_json_error(
                send, 401, "unauthorized", "missing bearer token: send `Authorization: Bearer <api_key>`", challenge
            )
            return
        try:
            owner = await anyio.to_thread.run_sync(self._account_of, token)
        except AuthenticationError as exc:
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            await send_json_error(send, 401, exc.code, exc.message, challenge)
            return
        except Exception:
            log.exception("cannot authenticate an admin MCP request")
            await send_json_error(send, 503, "unavailable", "chatbox cannot serve this request now; retry", {})
            return
        if owner != account_id:
            await send_json_error(send, 403, "forbidden", "this API key belongs to another account", {})
            return
        await serve_stateless(build_admin_server(self.runtime, account_id), self.security, scope, receive, send)
