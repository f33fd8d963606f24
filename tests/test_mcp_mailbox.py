"""The per-mailbox MCP server, driven by the SDK's own client over HTTP against uvicorn on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_app
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox
from tests.support.mcp import (
    ERAS,
    LEGACY,
    MODERN,
    ConnectorReply,
    StandInConnector,
    mcp_client,
    run_async,
    running_connector,
    serving,
    text_of,
)
from tests.support.pipeline import accept_directly, post_inbound, running_consumer
from tests.support.receiver import WebhookReceiver, running_receiver

CONNECTOR_TOKEN = "connector-token-0123456789abcdef"
COMMON_TOOLS = ["list_chats", "switch_chat", "get_focus", "read_chat", "send_message"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_private_webhooks=True,
        delivery_retry_base_seconds=0.01,
    )


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with serving(create_app(runtime)) as url:
        yield url


@pytest.fixture
def connector() -> Iterator[StandInConnector]:
    with running_connector(CONNECTOR_TOKEN) as running:
        yield running


def call_tool(
    url: str, token: str, name: str, arguments: dict[str, Any] | None = None, mode: str = LEGACY
) -> types.CallToolResult:
    async def go() -> types.CallToolResult:
        async with mcp_client(url, token, mode) as client:
            return await client.call_tool(name, arguments or {})

    return run_async(go)


def _mailbox_with_signal(
    client: TestClient, account: AccountKey, connector: StandInConnector | None = None, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    mailbox = create_mailbox(client, account, **fields)
    config: dict[str, Any] = {}
    if connector is not None:
        credential = create_credential(client, account, kind="mcp_proxy_auth", name="out", value=CONNECTOR_TOKEN)
        config = {"outbound_url": connector.url, "outbound_credential_id": credential["id"]}
    connection = create_connection(client, account, mailbox["id"], platform="signal", config=config)
    return mailbox, connection


def mcp_url(base_url: str, mailbox: dict[str, Any]) -> str:
    return f"{base_url}/mcp/{mailbox['id']}"


@pytest.mark.parametrize("mode", ERAS)
def test_instructions_explain_focal_attention_and_name_the_platforms(
    client: TestClient, account: AccountKey, base_url: str, mode: str
) -> None:
    mailbox, _ = _mailbox_with_signal(client, account)

    async def go() -> tuple[str | None, str]:
        async with mcp_client(mcp_url(base_url, mailbox), mailbox["mcp_token"], mode) as session:
            return session.instructions, session.protocol_version

    instructions, version = run_async(go)

    assert version == ("2025-11-25" if mode == LEGACY else "2026-07-28")
    assert instructions is not None
    for phrase in ("focal chat", "notification", "list_chats", "switch_chat", "send_message", "signal"):
        assert phrase in instructions
    assert "telegram" not in instructions


@pytest.mark.parametrize("mode", ERAS)
def test_platform_tools_are_listed_only_for_connected_platforms(
    client: TestClient, account: AccountKey, base_url: str, mode: str
) -> None:
    bare = create_mailbox(client, account, name="bare")
    mailbox, _ = _mailbox_with_signal(client, account)
    create_connection(client, account, mailbox["id"], platform="telegram")

    async def names(target: dict[str, Any]) -> list[types.Tool]:
        async with mcp_client(mcp_url(base_url, target), target["mcp_token"], mode) as session:
            return (await session.list_tools()).tools

    bare_tools = run_async(lambda: names(bare))
    tools = run_async(lambda: names(mailbox))

    assert [t.name for t in bare_tools] == COMMON_TOOLS
    # Signal's program offers every message action and media (the container contract), so its mailbox lists them.
    actions = ["edit_message", "delete_message", "react", "typing"]
    media = ["read_attachment", "send_file"]
    assert [t.name for t in tools] == [*COMMON_TOOLS, *actions, *media, "signal_send", "telegram_send"]
    by_name = {t.name: t for t in tools}
    assert by_name["send_message"].input_schema["required"] == ["text"]
    assert "chat_id" in by_name["switch_chat"].input_schema["required"]
    assert set(by_name["telegram_send"].input_schema["properties"]) >= {"text", "chat_id", "parse_mode"}
    assert by_name["list_chats"].annotations is not None and by_name["list_chats"].annotations.read_only_hint


def test_missing_or_wrong_token_is_401_before_any_mcp_processing(
    client: TestClient, account: AccountKey, base_url: str
) -> None:
    mailbox = create_mailbox(client, account, name="a")
    other = create_mailbox(client, account, name="b")
    attempts = [
        (mailbox["id"], {}),
        (mailbox["id"], {"authorization": "Bearer mcp_wrong"}),
        (mailbox["id"], {"authorization": f"Basic {mailbox['mcp_token']}"}),
        (mailbox["id"], {"authorization": f"Bearer {other['mcp_token']}"}),
        ("mbx_01JD3ZZZZZZZZZZZZZZZZZZZZZ", {"authorization": f"Bearer {mailbox['mcp_token']}"}),
        ("not-an-id", {"authorization": f"Bearer {mailbox['mcp_token']}"}),
    ]

    for mailbox_id, auth in attempts:
        # Not even valid JSON-RPC: authentication must answer before the body is looked at.
        response = httpx.post(f"{base_url}/mcp/{mailbox_id}", content=b"{", headers={**MCP_HEADERS, **auth}, timeout=30)
        assert response.status_code == 401, (mailbox_id, auth, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["code"] == "unauthorized"


def test_bare_path_and_trailing_slash_both_answer_without_redirect(
    client: TestClient, account: AccountKey, base_url: str
) -> None:
    mailbox = create_mailbox(client, account)
    headers = {**MCP_HEADERS, "authorization": f"Bearer {mailbox['mcp_token']}"}

    for path in (f"/mcp/{mailbox['id']}", f"/mcp/{mailbox['id']}/"):
        response = httpx.post(base_url + path, json=INITIALIZE, headers=headers, follow_redirects=False, timeout=30)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["result"]["serverInfo"]["name"] == "chatbox"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_answer_405_allow_post_at_once_even_with_the_right_token(
    client: TestClient, account: AccountKey, base_url: str, method: str
) -> None:
    mailbox = create_mailbox(client, account)
    headers = {"accept": "text/event-stream", "authorization": f"Bearer {mailbox['mcp_token']}"}

    # A stateless server has no event stream to offer: GET must not open one and hang (Mangum buffers it).
    response = httpx.request(method, f"{base_url}/mcp/{mailbox['id']}", headers=headers, timeout=30)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


def test_foreign_origin_and_unknown_host_are_refused(client: TestClient, account: AccountKey, base_url: str) -> None:
    mailbox = create_mailbox(client, account)
    headers = {**MCP_HEADERS, "authorization": f"Bearer {mailbox['mcp_token']}"}
    url = f"{base_url}/mcp/{mailbox['id']}"

    foreign = httpx.post(url, json=INITIALIZE, headers={**headers, "origin": "https://evil.example"}, timeout=30)
    public = httpx.post(url, json=INITIALIZE, headers={**headers, "origin": "https://chatbox.example.test"}, timeout=30)
    rebound = httpx.post(url, json=INITIALIZE, headers={**headers, "host": "evil.example"}, timeout=30)
    proxied = httpx.post(url, json=INITIALIZE, headers={**headers, "host": "chatbox.example.test"}, timeout=30)

    assert foreign.status_code == 403
    assert public.status_code == 200
    assert rebound.status_code == 421
    assert proxied.status_code == 200


def test_mailboxes_are_isolated(client: TestClient, account: AccountKey, base_url: str) -> None:
    first, first_connection = _mailbox_with_signal(client, account, name="first")
    second, _ = _mailbox_with_signal(client, account, name="second")
    post_inbound(client, first_connection, "m-1", "for the first mailbox only")

    seen_by_second = call_tool(mcp_url(base_url, second), second["mcp_token"], "list_chats")
    switch_from_second = call_tool(
        mcp_url(base_url, second), second["mcp_token"], "switch_chat", {"chat_id": "signal:chat-1"}
    )
    seen_by_first = call_tool(mcp_url(base_url, first), first["mcp_token"], "list_chats")

    assert not seen_by_second.is_error and "No chats yet" in text_of(seen_by_second)
    assert switch_from_second.is_error and "no chat of this mailbox has that chat_id" in text_of(switch_from_second)
    assert "for the first mailbox only" in text_of(seen_by_first)


@pytest.mark.parametrize("mode", ERAS)
def test_focus_tools_succeed(
    client: TestClient, account: AccountKey, base_url: str, connector: StandInConnector, mode: str
) -> None:
    mailbox, connection = _mailbox_with_signal(client, account, connector)
    post_inbound(client, connection, "m-1", "hello there", sender_name="Ada", chat_name="Ada")
    post_inbound(client, connection, "m-2", "second", sender_name="Ada", chat_name="Ada")
    url, token = mcp_url(base_url, mailbox), mailbox["mcp_token"]

    async def go() -> list[types.CallToolResult]:
        async with mcp_client(url, token, mode) as session:
            return [
                await session.call_tool("list_chats", {}),
                await session.call_tool("get_focus", {}),
                await session.call_tool("switch_chat", {"chat_id": "signal:chat-1"}),
                await session.call_tool("get_focus", {}),
                await session.call_tool("send_message", {"text": "hi Ada"}),
                await session.call_tool("signal_send", {"text": "also this", "chat_id": "chat-1"}),
                await session.call_tool("read_chat", {"chat_id": "signal:chat-1", "limit": 3}),
                await session.call_tool("switch_chat", {"chat_id": None}),
            ]

    listed, no_focus, switched, focal, sent, signal_sent, history, cleared = run_async(go)

    for result in (listed, no_focus, switched, focal, sent, signal_sent, history, cleared):
        assert not result.is_error, text_of(result)
    assert "Ada (signal:chat-1)" in text_of(listed) and "2 unread" in text_of(listed)
    assert listed.structured_content is not None
    assert listed.structured_content["chats"][0]["id"] == "signal:chat-1"
    assert "No chat is focal" in text_of(no_focus)
    assert "Ada: hello there" in text_of(switched) and "Ada: second" in text_of(switched)
    assert switched.structured_content is not None and switched.structured_content["focus"]["unread"] == 0
    assert "signal:chat-1" in text_of(focal)
    assert sent.structured_content is not None and sent.structured_content["external_id"] == "1001"
    assert [r.body["text"] for r in connector.requests] == ["hi Ada", "also this"]
    assert [m["text"] for m in (history.structured_content or {})["messages"]] == ["second", "hi Ada", "also this"]
    assert "Focus cleared" in text_of(cleared)


def test_every_failure_is_a_tool_error_with_advice(
    client: TestClient, runtime: Runtime, account: AccountKey, base_url: str, connector: StandInConnector
) -> None:
    mailbox, connection = _mailbox_with_signal(client, account, connector)
    telegram = create_connection(client, account, mailbox["id"], platform="telegram")
    post_inbound(client, connection, "m-1")
    accept_directly(runtime, telegram, "t-1", external_chat_id="-100200")
    url, token = mcp_url(base_url, mailbox), mailbox["mcp_token"]

    async def go() -> dict[str, types.CallToolResult]:
        async with mcp_client(url, token) as session:
            results = {
                "no focus": await session.call_tool("send_message", {"text": "hello"}),
                "unknown chat": await session.call_tool("switch_chat", {"chat_id": "signal:nobody"}),
                "malformed chat": await session.call_tool("read_chat", {"chat_id": "nobody"}),
                "missing argument": await session.call_tool("read_chat", {}),
                "wrong type": await session.call_tool("read_chat", {"chat_id": "signal:chat-1", "limit": "many"}),
                "extra argument": await session.call_tool("get_focus", {"chat": "x"}),
                "unknown tool": await session.call_tool("delete_everything", {}),
                "absent platform tool": await session.call_tool("discord_send", {"text": "hi"}),
                "wrong platform": await session.call_tool("signal_send", {"text": "hi", "chat_id": "telegram:-100200"}),
                "no connector": await session.call_tool("send_message", {"text": "hi", "chat_id": "telegram:-100200"}),
                "unknown platform": await session.call_tool("list_chats", {"platform": "icq"}),
            }
            connector.script = [connector_reply(429, "slow down", retry_after="3")]
            results["rate limit"] = await session.call_tool("send_message", {"text": "x", "chat_id": "signal:chat-1"})
            connector.script = [connector_reply(404, "no such recipient")]
            results["refused"] = await session.call_tool("send_message", {"text": "x", "chat_id": "signal:chat-1"})
            return results

    results = run_async(go)

    expected = {
        "no focus": "switch_chat",
        "unknown chat": "list_chats",
        "malformed chat": "<platform>:<external_id>",
        "missing argument": "chat_id",
        "wrong type": "limit",
        "extra argument": "chat",
        "unknown tool": "available:",
        "absent platform tool": "no active discord connection",
        "wrong platform": "telegram_send",
        "unknown platform": "unknown platform; this deployment serves",
        "no connector": "no telegram connector is available",
        "rate limit": "wait 3s",
        "refused": "no such recipient",
    }
    for case, phrase in expected.items():
        assert results[case].is_error, case
        assert phrase in text_of(results[case]), (case, text_of(results[case]))


def connector_reply(status: int, message: str, retry_after: str | None = None) -> ConnectorReply:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return ConnectorReply(status, {"code": "error", "message": message}, headers)


def test_archived_connection_makes_send_a_tool_error(
    client: TestClient, account: AccountKey, base_url: str, connector: StandInConnector
) -> None:
    mailbox, connection = _mailbox_with_signal(client, account, connector)
    post_inbound(client, connection, "m-1")
    client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)

    result = call_tool(
        mcp_url(base_url, mailbox), mailbox["mcp_token"], "send_message", {"text": "hi", "chat_id": "signal:chat-1"}
    )

    assert result.is_error and "archived" in text_of(result)
    assert connector.requests == []


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def test_focal_chat_arrives_in_full_others_as_notifications_and_recap_shows_both_sides(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    base_url: str,
    connector: StandInConnector,
    receiver: WebhookReceiver,
) -> None:
    mailbox, connection = _mailbox_with_signal(client, account, connector, webhook_url=receiver.url)
    url, token = mcp_url(base_url, mailbox), mailbox["mcp_token"]

    with running_consumer(runtime):
        post_inbound(client, connection, "a-1", "are you there?", external_chat_id="alice", sender_name="Alice")
        post_inbound(client, connection, "b-1", "ping", external_chat_id="bob", sender_name="Bob", chat_name="Bob")
        receiver.wait_for(2)

        switched = call_tool(url, token, "switch_chat", {"chat_id": "signal:alice"}, mode=MODERN)
        sent = call_tool(url, token, "send_message", {"text": "yes, here"}, mode=MODERN)
        post_inbound(client, connection, "a-2", "great, thanks", external_chat_id="alice", sender_name="Alice")
        receiver.wait_for(3)
        post_inbound(client, connection, "b-2", "hello?", external_chat_id="bob", sender_name="Bob")
        requests = receiver.wait_for(4)
        recap = call_tool(url, token, "switch_chat", {"chat_id": "signal:alice"}, mode=MODERN)

    assert not switched.is_error and not sent.is_error, (text_of(switched), text_of(sent))
    before_focus = [r.json() for r in requests[:2]]
    focal, notification = requests[2].json(), requests[3].json()
    assert all(body["focal"] is False for body in before_focus)
    assert focal["focal"] is True and focal["chat_id"] == "signal:alice"
    assert focal["content"] == "Alice: great, thanks"  # the default focal_message template
    assert notification["focal"] is False and notification["chat_id"] == "signal:bob"
    assert "hello?" in notification["content"] and "switch_chat" in notification["content"]
    assert "* signal:alice: 0 unread, focal" in notification["content"]  # the chat list, focal marked
    assert "Bob (signal:bob): 2 unread" in notification["content"]
    recap_lines = text_of(recap).splitlines()
    assert [line.split("] ", 1)[1] for line in recap_lines if line.startswith("[")] == [
        "Alice: are you there?",
        "you (agent): yes, here",
        "Alice: great, thanks",
    ]
    assert [r.body["text"] for r in connector.requests] == ["yes, here"]


def test_rest_chats_and_focal_chat_id_use_the_ids_list_chats_shows(
    client: TestClient, account: AccountKey, base_url: str
) -> None:
    mailbox, connection = _mailbox_with_signal(client, account)
    post_inbound(client, connection, "m-1", "hello", chat_name="Ada")
    post_inbound(client, connection, "m-2", "hi", external_chat_id="chat-2", chat_name="Bob")
    url, token = mcp_url(base_url, mailbox), mailbox["mcp_token"]
    switched = call_tool(url, token, "switch_chat", {"chat_id": "signal:chat-2"})
    assert not switched.is_error, text_of(switched)

    listed = call_tool(url, token, "list_chats")
    rest = client.get(f"/v1/mailboxes/{mailbox['id']}/chats", headers=account.headers)
    shown = client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()

    assert rest.status_code == 200, rest.text
    items = rest.json()["items"]
    assert [c["id"] for c in items] == [c["id"] for c in (listed.structured_content or {})["chats"]]
    assert {c["id"]: (c["name"], c["unread"], c["focal"]) for c in items} == {
        "signal:chat-1": ("Ada", 1, False),
        "signal:chat-2": ("Bob", 0, True),
    }
    assert all(c["muted"] is False and c["last_activity_at"] for c in items)
    assert shown["focal_chat_id"] == "signal:chat-2"


def test_rest_chats_of_another_accounts_mailbox_are_not_found(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox, _ = _mailbox_with_signal(client, account)

    response = client.get(f"/v1/mailboxes/{mailbox['id']}/chats", headers=other_account.headers)

    assert response.status_code == 404
