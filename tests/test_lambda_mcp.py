"""The MCP Lambda entry (functions/mcp/handler.py) driven in-process with API Gateway HTTP API v2 events."""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.schemas import ConnectionCreate, MailboxCreate
from chatbox.domain.settings import get_settings
from chatbox.domain.vault import Vault, generate_key
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.accounts import create_account
from chatbox.services.connections import create_connection
from chatbox.services.mailboxes import create_mailbox
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from connectors import builtin_platforms
from tests.support.mcp import close_leftover_event_loop
from tests.test_lambda_api import PUBLIC_URL, LambdaContext, body_of

EVENTS = Path(__file__).parent / "events"
HANDLER_MODULE = "functions.mcp.handler"
FAILURES_ALLOWED = 2  # CHATBOX_AUTH_FAILURES_PER_CREDENTIAL of the functions under test


@dataclass
class LoadedMcpHandler:
    module: ModuleType
    mailbox_id: str
    token: str

    def event(
        self, payload: dict[str, Any] | None, *, token: str | None = None, source_ip: str | None = None, **headers: str
    ) -> dict[str, Any]:
        """The recorded MCP POST, re-aimed at this mailbox with another JSON-RPC body (None: a GET without one),
        from another address when given."""
        event: dict[str, Any] = json.loads((EVENTS / "apigw_v2_post_mcp.json").read_text())
        event = copy.deepcopy(event)
        path = f"/mcp/{self.mailbox_id}"
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = {"mailbox_id": self.mailbox_id}
        event["headers"]["authorization"] = f"Bearer {self.token if token is None else token}"
        event["headers"].update(headers)
        if source_ip is not None:
            event["requestContext"]["http"]["sourceIp"] = event["headers"]["x-forwarded-for"] = source_ip
        if payload is None:
            event["requestContext"]["http"]["method"] = "GET"
            event["headers"]["accept"] = "text/event-stream"
            del event["body"], event["headers"]["content-length"], event["headers"]["content-type"]
            return event
        event["body"] = json.dumps(payload)
        event["headers"]["content-length"] = str(len(event["body"]))
        return event

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.handler(event, LambdaContext(function_name="chatbox-mcp"))
        return response


@pytest.fixture
def mcp_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadedMcpHandler]:
    """Import the handler as a cold start would: settings from the environment, app built at import."""
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    vault_key = generate_key()
    database = Database(url)
    upgrade_to_head(database.engine)
    with database.session() as db:
        account_id = create_account(db, "acme").account_id
        created = create_mailbox(db, account_id, MailboxCreate(name="agent"), policy=AddressPolicy())
        create_connection(
            db,
            Vault.from_strings(vault_key, ""),
            PlatformRegistry(builtin_platforms()),
            account_id,
            created.mailbox.id,
            ConnectionCreate(platform="signal"),
        )
    database.dispose()
    for name in [name for name in os.environ if name.startswith("CHATBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHATBOX_DB_URL", url)
    monkeypatch.setenv("CHATBOX_VAULT_KEY", vault_key)
    monkeypatch.setenv("CHATBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATBOX_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("CHATBOX_AUTH_FAILURES_PER_CREDENTIAL", str(FAILURES_ALLOWED))
    get_settings.cache_clear()
    sys.modules.pop(HANDLER_MODULE, None)
    module = importlib.import_module(HANDLER_MODULE)
    try:
        yield LoadedMcpHandler(module, created.mailbox.id, created.mcp_token)
    finally:
        module.handler.app.state.runtime.close()
        close_leftover_event_loop()
        sys.modules.pop(HANDLER_MODULE, None)
        get_settings.cache_clear()


def test_recorded_initialize_then_warm_tool_calls_answer_json_rpc(mcp_handler: LoadedMcpHandler) -> None:
    initialize = json.loads(json.loads((EVENTS / "apigw_v2_post_mcp.json").read_text())["body"])
    legacy = {"mcp-protocol-version": "2025-11-25"}

    cold = mcp_handler(mcp_handler.event(initialize))
    warm = mcp_handler(mcp_handler.event({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, **legacy))
    warmer = mcp_handler(
        mcp_handler.event(
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "list_chats", "arguments": {}}},
            **legacy,
        )
    )

    for response in (cold, warm, warmer):
        assert response["statusCode"] == 200, response["body"]
        assert response["headers"]["content-type"].startswith("application/json")
    result = body_of(cold)["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert "focal chat" in result["instructions"] and "signal" in result["instructions"]
    assert [tool["name"] for tool in body_of(warm)["result"]["tools"]][-1] == "signal_send"
    listed = body_of(warmer)["result"]
    assert listed["isError"] is False and "No chats yet" in listed["content"][0]["text"]


def test_modern_era_discover_and_call_on_warm_invocations(mcp_handler: LoadedMcpHandler) -> None:
    modern = {"mcp-protocol-version": "2026-07-28"}
    # 2026-07-28: every request is self-describing, its envelope in params._meta.
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": envelope}}
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "send_message", "arguments": {"text": "hi"}, "_meta": envelope},
    }

    discovered = mcp_handler(mcp_handler.event(discover, **modern, **{"mcp-method": "server/discover"}))
    called = mcp_handler(mcp_handler.event(call, **modern, **{"mcp-method": "tools/call", "mcp-name": "send_message"}))

    assert discovered["statusCode"] == 200, discovered["body"]
    assert "2026-07-28" in body_of(discovered)["result"]["supportedVersions"]
    assert "focal chat" in body_of(discovered)["result"]["instructions"]
    assert called["statusCode"] == 200, called["body"]
    result = body_of(called)["result"]
    assert result["isError"] is True and "switch_chat" in result["content"][0]["text"]


def test_wrong_token_is_401_through_api_gateway(mcp_handler: LoadedMcpHandler) -> None:
    response = mcp_handler(mcp_handler.event({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token="mcp_nope"))

    assert response["statusCode"] == 401
    assert response["headers"]["www-authenticate"].startswith("Bearer")
    assert body_of(response)["code"] == "unauthorized"


def test_get_is_405_allow_post_through_api_gateway_rather_than_a_stream_until_the_timeout(
    mcp_handler: LoadedMcpHandler,
) -> None:
    response = mcp_handler(mcp_handler.event(None))

    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == "POST"
    assert body_of(response)["code"] == "method_not_allowed"


def test_wrong_tokens_are_throttled_by_api_gateways_source_ip(mcp_handler: LoadedMcpHandler) -> None:
    tools_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    legacy = {"mcp-protocol-version": "2025-11-25"}

    wrong = [mcp_handler(mcp_handler.event(tools_list, token="mcp_nope")) for _ in range(FAILURES_ALLOWED)]
    refused = mcp_handler(mcp_handler.event(tools_list, **legacy))
    # The address is API Gateway's sourceIp; a forwarding header the client wrote itself changes nothing.
    spoofed = mcp_handler(mcp_handler.event(tools_list, **legacy, **{"x-forwarded-for": "198.51.100.99"}))
    elsewhere = mcp_handler(mcp_handler.event(tools_list, source_ip="198.51.100.99", **legacy))

    assert [response["statusCode"] for response in wrong] == [401] * FAILURES_ALLOWED
    assert refused["statusCode"] == 429
    assert int(refused["headers"]["retry-after"]) > 0
    assert body_of(refused)["code"] == "rate_limited"
    assert spoofed["statusCode"] == 429
    assert elsewhere["statusCode"] == 200, elsewhere["body"]


def test_first_deploy_without_public_url_answers_on_the_api_gateway_domain(
    mcp_handler: LoadedMcpHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PublicUrl empty: the functions learn the API's domain from API Gateway's request context, not a 421.
    settings = mcp_handler.module.runtime.settings
    monkeypatch.setattr(settings, "_public_url_given", False)
    monkeypatch.setattr(settings, "public_url", "http://127.0.0.1:8000")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }

    response = mcp_handler(mcp_handler.event(initialize))

    assert response["statusCode"] == 200, body_of(response)
    assert settings.public_url == "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    assert settings.mcp_url("mbx_1").startswith(settings.public_url)


def test_a_client_chosen_host_is_still_refused_on_a_first_deploy(
    mcp_handler: LoadedMcpHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = mcp_handler.module.runtime.settings
    monkeypatch.setattr(settings, "_public_url_given", False)
    tools_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

    response = mcp_handler(
        mcp_handler.event(tools_list, host="attacker.example", **{"mcp-protocol-version": "2025-11-25"})
    )

    assert response["statusCode"] == 421
