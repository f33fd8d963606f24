"""Tool registration for chatbox's low-level MCP servers: tools in, `tools/list` and `tools/call` handlers out.

Both servers (the mailbox's and the admin's) describe each tool once, as a `ServedTool`: its
listing (name, title, description, annotations), the pydantic model its arguments must match
(the input schema is derived from it), and the synchronous function that answers it, already
bound to the caller (a mailbox, an account). `ToolTable` does the rest the same way for both:
validates the arguments, runs the function in a worker thread (the services are synchronous
SQLAlchemy), and turns every failure into a tool error (`isError`) that says what to do next,
through the one table `ERROR_ADVICE`.

Example:
    ```python
    table = ToolTable([ServedTool("ping", "Answer pong.", NoInput, lambda _args: JsonAnswer({"pong": True}))],
                      caller="account acc_…")
    server = table.server("chatbox-admin", instructions="…")
    ```
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from pydantic import BaseModel, ValidationError

from chatbox import __version__
from chatbox.domain.errors import (
    ChatboxError,
    ConflictError,
    ConnectorUnavailableError,
    InvalidInputError,
    NoFocusError,
    NotFoundError,
    PlatformRefusedError,
    RateLimitedError,
    UnknownOutcomeError,
)
from chatbox.domain.untrusted import shown_name

log = logging.getLogger(__name__)


class ToolAnswer(Protocol):
    """What a tool function returns: a readable text block, and the same facts as `structuredContent`."""

    @property
    def text(self) -> str: ...

    @property
    def structured(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JsonAnswer:
    """An answer whose text is its structured content as indented JSON (the admin tools answer so)."""

    structured: dict[str, Any]

    @property
    def text(self) -> str:
        return json.dumps(self.structured, indent=2, default=str)


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a tool's input model, without pydantic's generated titles (noise to an agent)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema


@dataclass(frozen=True)
class ServedTool:
    """One tool as a server serves it.

    Args:
        call: the tool function bound to its caller; gets the validated `input_model` instance and
            runs in a worker thread. A `ChatboxError` it raises becomes a tool error with advice.
    """

    name: str
    description: str
    input_model: type[BaseModel]
    call: Callable[[Any], ToolAnswer]
    title: str | None = None
    annotations: types.ToolAnnotations | None = None

    def listing(self) -> types.Tool:
        """The tool as `tools/list` shows it."""
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=input_schema(self.input_model),
            annotations=self.annotations,
        )


@dataclass
class ToolTable:
    """The `tools/list` and `tools/call` handlers of one low-level server, for one caller.

    Args:
        tools: what `tools/list` shows, in this order.
        caller: who the tools act for (`mailbox mbx_…`), for the log when a tool crashes.
        unavailable: tools known but not served to this caller, each with the tool error that says why.
    """

    tools: Sequence[ServedTool]
    caller: str
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {tool.name: tool for tool in self.tools}

    async def list_tools(self, _ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.listing() for tool in self.tools])

    async def call_tool(self, _ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self._by_name.get(params.name)
        if tool is None:
            reason = self.unavailable.get(params.name)
            if reason is not None:
                return tool_error(reason)
            return tool_error(f"unknown tool; available: {', '.join(sorted(self._by_name))}")
        try:
            arguments = tool.input_model.model_validate(params.arguments or {})
        except ValidationError as exc:
            return tool_error(describe_validation_error(tool.name, exc))
        try:
            answer = await anyio.to_thread.run_sync(tool.call, arguments)
        except ChatboxError as exc:
            return tool_error(describe_error(exc))
        except ValidationError as exc:  # a model built inside the tool refused what the input model let through
            return tool_error(describe_validation_error(tool.name, exc))
        except Exception:
            log.exception("tool %s crashed for %s", tool.name, self.caller)
            return tool_error(f"{tool.name} failed on chatbox's side (an internal error); try again shortly.")
        blocks: list[types.ContentBlock] = [types.TextContent(text=answer.text)]
        blocks += getattr(answer, "content", ())  # e.g. read_attachment's image or embedded resource
        return types.CallToolResult(content=blocks, structured_content=answer.structured)

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """The served tool's input schema (the SDK checks `Mcp-Param-*` headers against it), else None."""
        tool = self._by_name.get(name)
        return input_schema(tool.input_model) if tool is not None else None

    def server(self, name: str, *, instructions: str, title: str | None = None) -> Server[Any]:
        """A low-level MCP server offering these tools (cheap: built per request)."""
        return Server(
            name,
            version=__version__,
            title=title,
            instructions=instructions,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            get_tool_input_schema=self.input_schema,
        )


def tool_error(message: str) -> types.CallToolResult:
    """A tool error: the agent reads `message` and carries on (the call itself succeeded at the protocol level)."""
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


# The one table from error types to the advice appended to a tool error (most specific first).
ERROR_ADVICE: tuple[tuple[type[ChatboxError], str], ...] = (
    (NoFocusError, "Call list_chats, then switch_chat (or pass chat_id)."),
    (NotFoundError, "Call list_chats for valid chat ids."),
    (InvalidInputError, "Fix the arguments and call again."),
    (RateLimitedError, "Wait, then send again."),
    (
        UnknownOutcomeError,
        "Do not resend with a new idempotency_key before checking (read_chat, or ask): it may have arrived. "
        "Calling again with the same idempotency_key is safe: it never posts twice.",
    ),
    (PlatformRefusedError, "Change the message or the chat; sending the same again will fail again."),
    (ConnectorUnavailableError, "Try again later, or answer on another platform."),
    (ConflictError, "This cannot be done in the current state."),
)


def describe_error(exc: ChatboxError) -> str:
    """The tool error text for a service error: its message, its code, and what to do next."""
    for error_type, advice in ERROR_ADVICE:
        if isinstance(exc, error_type):
            return f"{exc.message} [{exc.code}] {advice}"
    return f"{exc.message} [{exc.code}]"


def describe_validation_error(tool: str, exc: ValidationError) -> str:
    """The tool error text for arguments that do not match the input model: where and what, at most five,
    never the input (a key is named only when it looks like a name: `chatbox.domain.untrusted.shown_name`)."""
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(shown_name(part) for part in error.get("loc", ())) or "arguments"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return (
        f"invalid arguments for {tool}: " + "; ".join(problems) + " [invalid_input] Fix the arguments and call again."
    )
