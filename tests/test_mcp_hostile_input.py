"""Hostile input to the MCP servers: tool errors that say what is wrong, never an internal error, a traceback
in the log, or the input repeated back (both databases; JSON-RPC over the app in-process)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbox.domain.settings import Settings
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox

Json = dict[str, Any]
MARKER = "do-not-echo-6e1f"
SECRET_TEMPLATE = "tenant-private-template-text-81c4"
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


@pytest.fixture
def mcp(client: TestClient, settings: Settings) -> TestClient:
    """The app as reached at CHATBOX_PUBLIC_URL (the MCP endpoints check the Host header)."""
    return TestClient(client.app, base_url=settings.public_url)


def admin_post(client: TestClient, account: AccountKey, body: bytes) -> Any:
    headers = {**MCP_HEADERS, **account.headers}
    return client.post(f"/mcp/admin/{account.account_id}", content=body, headers=headers)


def call_admin_tool(client: TestClient, account: AccountKey, name: str, arguments: Json) -> Json:
    """The `result` of a tools/call (a tool error is a result with isError)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = client.post(f"/mcp/admin/{account.account_id}", json=body, headers={**MCP_HEADERS, **account.headers})
    assert response.status_code == 200, response.text
    result: Json = response.json()["result"]
    return result


def text_of(result: Json) -> str:
    return "".join(block.get("text", "") for block in result["content"])


@pytest.mark.parametrize(
    "templates",
    [
        {f"focal_e{i}": SECRET_TEMPLATE for i in range(33)},
        {"n" * 5_000: SECRET_TEMPLATE},
        {f"focal_{MARKER}": SECRET_TEMPLATE},
        {"focal_message": SECRET_TEMPLATE + "\x00"},
    ],
    ids=["33-templates", "5000-char-name", "name-not-a-name", "nul-in-text"],
)
@pytest.mark.parametrize("tool", ["update_templates", "preview_template"])
def test_templates_the_schema_refuses_are_a_tool_error_without_a_traceback_or_the_templates(
    client: TestClient,
    mcp: TestClient,
    account: AccountKey,
    caplog: pytest.LogCaptureFixture,
    tool: str,
    templates: Json,
) -> None:
    mailbox = create_mailbox(client, account)
    caplog.set_level(logging.DEBUG)

    result = call_admin_tool(mcp, account, tool, {"mailbox_id": mailbox["id"], "templates": templates})

    assert result["isError"] is True
    assert "invalid arguments" in text_of(result) and "internal error" not in text_of(result)
    assert MARKER not in text_of(result) and SECRET_TEMPLATE not in text_of(result)
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
    assert SECRET_TEMPLATE not in caplog.text
    fetched = client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()
    assert fetched["templates"] == {}


def test_thirty_two_templates_are_still_taken(client: TestClient, mcp: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    templates = {f"focal_e{i}": "$TEXT" for i in range(32)}

    result = call_admin_tool(mcp, account, "update_templates", {"mailbox_id": mailbox["id"], "templates": templates})

    assert result.get("isError") is not True, text_of(result)
    assert len(result["structuredContent"]["templates"]) == 32


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "' + MARKER.encode(),
        b'{"' + MARKER.encode() + b'": 1}',
        b'{"jsonrpc": "2.0", "id": 1, "methodx": "' + MARKER.encode() + b'"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "' + MARKER.encode() + b'"}',
        b"[" * 100_000,
    ],
    ids=["truncated", "not-json-rpc", "no-method", "unknown-method", "deep"],
)
def test_json_rpc_errors_do_not_repeat_the_request(mcp: TestClient, account: AccountKey, body: bytes) -> None:
    response = admin_post(mcp, account, body)

    assert response.status_code in (200, 400), response.text
    error = response.json()["error"]
    assert MARKER not in response.text
    assert isinstance(error["code"], int) and error["message"]


def test_tool_errors_do_not_repeat_ids_chat_ids_or_tool_names(
    client: TestClient, mcp: TestClient, account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    create_connection(client, account, mailbox["id"], platform="signal")

    results = [
        call_admin_tool(mcp, account, "mailbox_health", {"mailbox_id": f"mbx_{MARKER}"}),
        call_admin_tool(mcp, account, "mute_chat", {"mailbox_id": mailbox["id"], "chat_id": f"signal:{MARKER}"}),
        call_admin_tool(mcp, account, "mute_chat", {"mailbox_id": mailbox["id"], "chat_id": MARKER}),
        call_admin_tool(mcp, account, f"{MARKER}_tool", {}),
        call_admin_tool(mcp, account, "mailbox_health", {"mailbox_id": mailbox["id"], MARKER: 1}),
    ]

    for result in results:
        assert result["isError"] is True
        assert MARKER not in text_of(result), text_of(result)
