"""Platforms come from registered specs: a platform is a folder exporting one `PlatformSpec`.

The throwaway `echo` platform (tests/platforms/echo) is known to no core file; registered by the test's
composition root it gets connections, ingest, an MCP send tool, delivery and OpenAPI, end to end.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.ports.connector import ConnectionContext, OutboundMessage, SentMessage
from chatbox.ports.platforms import PlatformMode, PlatformRegistry, PlatformSpec
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from connectors import builtin_platforms
from tests.conftest import make_account
from tests.platforms.echo.spec import SPEC as ECHO
from tests.platforms.echo.spec import EchoSettings
from tests.support.api import assert_error, create_mailbox
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.pipeline import running_consumer
from tests.support.receiver import WebhookReceiver, running_receiver

API_KEY = "echo-key-0123456789"


@dataclass
class EchoApi:
    """The echo platform's API on 127.0.0.1: `GET /me`, `POST /send`; records what it was sent."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    root: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        api = self
        ids = itertools.count(1000)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.headers.get("authorization") != f"Bearer {API_KEY}":
                    self._answer(401, {"error": "unauthorized"})
                    return
                self._answer(200, {"account": "echo-team"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                api.sent.append(body)
                self._answer(200, {"id": next(ids)})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


@pytest.fixture
def echo_api() -> Iterator[EchoApi]:
    api = EchoApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler())
    api.root = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def echo_runtime(db_url: str, tmp_path: Path, echo_api: EchoApi) -> Iterator[Runtime]:
    settings = Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
    )
    runtime = build_runtime(
        settings,
        platforms=[*builtin_platforms(), ECHO],
        platform_settings={"echo": EchoSettings(api_url=echo_api.root)},
    )
    try:
        yield runtime
    finally:
        runtime.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _ingest(client: TestClient, connection_id: str, update: int, token: str | None) -> Any:
    body = {"update": update, "chat": "room-1", "from": "ada", "text": f"hello #{update}"}
    headers = {"x-echo-token": token} if token is not None else {}
    return client.post(f"/v1/ingest/echo/{connection_id}", json=body, headers=headers)


def test_a_platform_from_a_test_folder_gets_connections_ingest_delivery_and_an_mcp_send_tool(
    echo_runtime: Runtime, echo_api: EchoApi, receiver: WebhookReceiver
) -> None:
    account = make_account(echo_runtime)
    with TestClient(create_app(echo_runtime)) as client:
        platforms = client.get("/v1/platforms", headers=account.headers).json()
        mailbox = create_mailbox(client, account, webhook_url=receiver.url)
        path = f"/v1/mailboxes/{mailbox['id']}/connections"
        missing = client.post(path, json={"platform": "echo"}, headers=account.headers)
        refused = client.post(path, json={"platform": "echo", "secrets": {"api_key": "nope"}}, headers=account.headers)
        created = client.post(path, json={"platform": "echo", "secrets": {"api_key": API_KEY}}, headers=account.headers)
        assert created.status_code == 201, created.text
        connection = created.json()
        token = _token(echo_runtime, connection["id"])
        unsigned = _ingest(client, connection["id"], 1, None)
        forged = _ingest(client, connection["id"], 1, "forged")
        taken = [_ingest(client, connection["id"], 1, token), _ingest(client, connection["id"], 1, token)]
        with running_consumer(echo_runtime):
            [delivered] = receiver.wait_for(1)
        openapi = client.get("/openapi.json").json()

    assert [p["name"] for p in platforms] == ["discord", "echo", "signal", "slack", "telegram"]
    assert_error(missing, 422, "invalid_input")
    assert "secrets.api_key" in missing.json()["message"]
    assert_error(refused, 422, "invalid_input")
    assert connection["ingest_url"] == f"https://chatbox.example.test/v1/ingest/echo/{connection['id']}"
    assert connection["config"]["account"] == "echo-team"
    assert_error(unsigned, 401)
    assert_error(forged, 403)
    assert [r.status_code for r in taken] == [200, 200]
    assert delivered.json()["chat_id"] == "echo:room-1" and delivered.json()["platform"] == "echo"
    assert "echo" in openapi["components"]["schemas"]["ConnectionCreate"]["properties"]["platform"]["enum"]
    assert "echo:X-Echo-Token" in openapi["components"]["securitySchemes"]

    tools, sent = _call_echo_send(echo_runtime, mailbox)

    echo_send = next(t for t in tools if t.name == "echo_send")
    assert "loud" in echo_send.input_schema["properties"]
    assert not sent.is_error, text_of(sent)
    assert echo_api.sent == [{"chat": "room-1", "text": "on my way", "reply_to": None, "loud": True}]
    with echo_runtime.db.session() as db:
        outbound = db.scalars(select(Message).where(Message.direction == "out")).one()
    assert outbound.external_id == "1000"


def _token(runtime: Runtime, connection_id: str) -> str:
    with runtime.db.session() as db:
        from chatbox.services.connections import get_connection, open_connection_secrets

        return open_connection_secrets(db, runtime.vault, get_connection(db, None, connection_id))["webhook_token"]


def _call_echo_send(runtime: Runtime, mailbox: dict[str, Any]) -> tuple[list[types.Tool], types.CallToolResult]:
    with serving(create_app(runtime)) as base_url:

        async def go() -> tuple[list[types.Tool], types.CallToolResult]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                tools = (await session.list_tools()).tools
                sent = await session.call_tool("echo_send", {"text": "on my way", "chat_id": "room-1", "loud": True})
                return tools, sent

        return run_async(go)


# --- the registry on its own -------------------------------------------------------------------------


class CountingConnector:
    def __init__(self) -> None:
        self.closed = False

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:  # noqa: ARG002
        return SentMessage("1")

    def close(self) -> None:
        self.closed = True


def test_a_connector_is_built_once_on_first_use_and_only_built_ones_are_closed() -> None:
    built: list[CountingConnector] = []

    def build(_settings: object) -> CountingConnector:
        built.append(CountingConnector())
        return built[-1]

    lazy = replace(ECHO, name="lazy", connector=build)
    idle = replace(ECHO, name="idle", connector=build)
    registry = PlatformRegistry([lazy, idle], settings={"lazy": EchoSettings(), "idle": EchoSettings()})

    assert registry.names() == ("idle", "lazy") and built == []
    first, second = registry.connector("lazy"), registry.connector("lazy")
    registry.close()

    assert first is second and len(built) == 1 and built[0].closed


def test_container_platforms_share_the_container_connector_and_take_no_webhooks() -> None:
    shared = CountingConnector()
    registry = PlatformRegistry(builtin_platforms(), container_connector=lambda: shared)

    assert registry.connector("signal") is shared and registry.connector("discord") is shared
    assert registry.webhook("signal") is None
    assert registry.spec("signal").mode is PlatformMode.container


def test_unknown_platform_names_the_served_ones_and_a_name_cannot_be_taken_twice() -> None:
    registry = PlatformRegistry(builtin_platforms())

    with pytest.raises(InvalidInputError, match="serves: discord, signal, slack, telegram"):
        registry.spec("icq")
    with pytest.raises(ConnectorUnavailableError, match="no icq connector"):
        registry.connector("icq")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(replace(ECHO, name="telegram"))
    with pytest.raises(ValueError, match="must match"):
        PlatformSpec(name="Bad Name", label="x", mode=PlatformMode.webhook, summary="x")


def test_composing_the_builtin_platforms_loads_no_platform_sdk() -> None:
    code = (
        "import sys\n"
        "from chatbox.compose import discover_platforms\n"
        "from connectors import builtin_platforms\n"
        "assert sorted(s.name for s in builtin_platforms()) == sorted(s.name for s in discover_platforms())\n"
        "print(sorted(m for m in ('telegram', 'slack_sdk', 'discord') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    assert done.stdout.strip() == "[]"


def test_the_platform_list_needs_an_api_key(echo_runtime: Runtime) -> None:
    with TestClient(create_app(echo_runtime)) as client:
        assert_error(client.get("/v1/platforms"), 401)
