"""MCP test helpers: the app on a real uvicorn on 127.0.0.1, the SDK's own client, and a stand-in
container connector speaking connectors/CONTRACT.md."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import anyio
import mcp_types as types
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.types import ASGIApp

T = TypeVar("T")
LEGACY = "legacy"
MODERN = "auto"  # probes server/discover, so it lands on 2026-07-28 with this server
ERAS = (LEGACY, MODERN)


def close_leftover_event_loop() -> None:
    """Close the event loop Mangum leaves set on the main thread (it runs each invocation on
    `asyncio.get_event_loop()`), so it is not garbage-collected unclosed during a later test."""
    policy = asyncio.get_event_loop_policy()
    loop = getattr(getattr(policy, "_local", None), "_loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_running() and not loop.is_closed():
        loop.close()
        policy.set_event_loop(None)


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function from a sync test, on a fresh event loop."""
    close_leftover_event_loop()
    return anyio.run(fn)


@contextmanager
def serving(app: ASGIApp, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "uvicorn did not stop"


@asynccontextmanager
async def mcp_client(url: str, token: str, mode: str = LEGACY) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP with a bearer token, in one protocol era."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None) as client:
        yield client


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


@dataclass
class SentRequest:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class ConnectorReply:
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class StandInConnector:
    """A container connector per connectors/CONTRACT.md: checks the bearer, records, answers a message id
    (or the next scripted error)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[SentRequest] = []
        self.script: list[ConnectorReply] = []
        self._counter = 1000
        self._lock = threading.Lock()
        connector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length))
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = connector._reply(SentRequest(headers, body))
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - overrides the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/send"

    def _reply(self, request: SentRequest) -> ConnectorReply:
        with self._lock:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return ConnectorReply(401, {"code": "unauthorized", "message": "bad credential"})
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
            self._counter += 1
            return ConnectorReply(200, {"message_id": str(self._counter)})


@contextmanager
def running_connector(token: str) -> Iterator[StandInConnector]:
    connector = StandInConnector(token)
    thread = threading.Thread(target=connector.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield connector
    finally:
        connector.server.shutdown()
        connector.server.server_close()
        thread.join(timeout=5)


def call_tools(app: ASGIApp, mailbox: dict[str, Any], *calls: tuple[str, dict[str, Any]]) -> list[types.CallToolResult]:
    """Serve `app` and call the mailbox's tools in order, in one MCP session."""
    with serving(app) as base_url:

        async def go() -> list[types.CallToolResult]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return [await session.call_tool(name, arguments) for name, arguments in calls]

        return run_async(go)
