"""The per-account admin MCP server over HTTP with the SDK's own client (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.asgi import create_app
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Chat, Delivery, Mailbox
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox
from tests.support.mcp import LEGACY, mcp_client, run_async, serving, text_of
from tests.support.pipeline import post_inbound

ADMIN_TOOLS = [
    "list_mailboxes",
    "mailbox_health",
    "list_connections",
    "mute_chat",
    "unmute_chat",
    "update_templates",
    "preview_template",
    "unpause_mailbox",
    "redrive_dead_letters",
    "tail_deliveries",
    "list_event_subscriptions",
    "create_event_subscription",
    "get_event_subscription",
    "update_event_subscription",
    "delete_event_subscription",
]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", db_url=db_url, vault_key=generate_key(), public_url="https://chatbox.example.test"
    )


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with serving(create_app(runtime)) as url:
        yield url


def admin_url(base_url: str, account: AccountKey) -> str:
    return f"{base_url}/mcp/admin/{account.account_id}"


def call(
    base_url: str, account: AccountKey, name: str, arguments: dict[str, Any] | None = None
) -> types.CallToolResult:
    async def go() -> types.CallToolResult:
        async with mcp_client(admin_url(base_url, account), account.api_key, LEGACY) as session:
            return await session.call_tool(name, arguments or {})

    return run_async(go)


def test_admin_server_lists_its_tools_and_instructions(base_url: str, account: AccountKey) -> None:
    async def go() -> tuple[str | None, list[str]]:
        async with mcp_client(admin_url(base_url, account), account.api_key, LEGACY) as session:
            return session.instructions, [t.name for t in (await session.list_tools()).tools]

    instructions, names = run_async(go)

    assert names == ADMIN_TOOLS
    assert instructions is not None and "mailbox_health" in instructions


def test_wrong_key_is_401_and_another_accounts_id_is_403(
    base_url: str, account: AccountKey, other_account: AccountKey
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

    wrong = httpx.post(
        admin_url(base_url, account), json=body, headers={**headers, "authorization": "Bearer nope"}, timeout=30
    )
    foreign = httpx.post(
        admin_url(base_url, other_account),
        json=body,
        headers={**headers, "authorization": f"Bearer {account.api_key}"},
        timeout=30,
    )
    missing = httpx.post(admin_url(base_url, account), json=body, headers=headers, timeout=30)

    assert wrong.status_code == 401 and "Bearer" in wrong.headers["www-authenticate"]
    assert missing.status_code == 401
    assert foreign.status_code == 403


def test_get_is_405_allow_post_at_once_even_with_the_right_key(base_url: str, account: AccountKey) -> None:
    headers = {"accept": "text/event-stream", "authorization": f"Bearer {account.api_key}"}

    response = httpx.get(admin_url(base_url, account), headers=headers, timeout=30)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_list_mailboxes_health_and_connections(
    client: TestClient, base_url: str, account: AccountKey, other_account: AccountKey
) -> None:
    mine = create_mailbox(client, account, name="mine")
    create_connection(client, account, mine["id"], platform="signal")
    create_mailbox(client, other_account, name="theirs")

    listed = call(base_url, account, "list_mailboxes")
    health = call(base_url, account, "mailbox_health", {"mailbox_id": mine["id"]})
    connections = call(base_url, account, "list_connections", {"mailbox_id": mine["id"]})

    assert [m["name"] for m in (listed.structured_content or {})["mailboxes"]] == ["mine"]
    assert (health.structured_content or {})["status"] == "active"
    assert [c["platform"] for c in (connections.structured_content or {})["connections"]] == ["signal"]


def test_another_accounts_mailbox_is_a_tool_error(
    client: TestClient, base_url: str, account: AccountKey, other_account: AccountKey
) -> None:
    theirs = create_mailbox(client, other_account, name="theirs")

    result = call(base_url, account, "mailbox_health", {"mailbox_id": theirs["id"]})

    assert result.is_error and "not found" in text_of(result)


def test_mute_and_unmute_a_chat(client: TestClient, runtime: Runtime, base_url: str, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    post_inbound(client, connection, "m-1", external_chat_id="+1555")

    muted = call(base_url, account, "mute_chat", {"mailbox_id": mailbox["id"], "chat_id": "signal:+1555"})
    with runtime.db.session() as db:
        assert db.scalars(select(Chat)).one().muted is True
    unmuted = call(base_url, account, "unmute_chat", {"mailbox_id": mailbox["id"], "chat_id": "signal:+1555"})
    unknown = call(base_url, account, "mute_chat", {"mailbox_id": mailbox["id"], "chat_id": "signal:+999"})

    assert not muted.is_error and not unmuted.is_error
    with runtime.db.session() as db:
        assert db.scalars(select(Chat)).one().muted is False
    assert unknown.is_error


def test_templates_are_previewed_validated_and_updated(client: TestClient, base_url: str, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    templates = {"focal_message": "<$SENDER_NAME> $TEXT", "ephemeral": "$UNREAD unread"}

    preview = call(base_url, account, "preview_template", {"mailbox_id": mailbox["id"], "templates": templates})
    bad = call(
        base_url, account, "update_templates", {"mailbox_id": mailbox["id"], "templates": {"focal_message": "$NOPE"}}
    )
    updated = call(base_url, account, "update_templates", {"mailbox_id": mailbox["id"], "templates": templates})

    assert (preview.structured_content or {}) == {"content": "<Ada> Are we still on for 3pm?", "ephemeral": "2 unread"}
    assert bad.is_error and "$NOPE" in text_of(bad)
    assert not updated.is_error
    fetched = client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()
    assert fetched["templates"] == templates


def test_unpause_redrive_and_tail(client: TestClient, runtime: Runtime, base_url: str, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    post_inbound(client, connection, "m-1")
    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        delivery.status, delivery.last_error = "dead", "HTTP 500"
        stored = db.get(Mailbox, mailbox["id"])
        assert stored is not None
        stored.status = "paused"
        db.commit()

    tail = call(base_url, account, "tail_deliveries", {"mailbox_id": mailbox["id"]})
    unpaused = call(base_url, account, "unpause_mailbox", {"mailbox_id": mailbox["id"]})
    redriven = call(base_url, account, "redrive_dead_letters", {"mailbox_id": mailbox["id"]})

    assert [d["status"] for d in (tail.structured_content or {})["deliveries"]] == ["dead"]
    assert (unpaused.structured_content or {})["status"] == "active"
    assert (redriven.structured_content or {}) == {"requeued": 1}


def test_bad_arguments_are_tool_errors(base_url: str, account: AccountKey) -> None:
    result = call(base_url, account, "tail_deliveries", {"mailbox_id": "mbx_x", "limit": 0})

    assert result.is_error and "invalid arguments" in text_of(result)


def test_event_subscriptions_are_managed_over_admin_mcp(client: TestClient, base_url: str, account: AccountKey) -> None:
    created = call(
        base_url, account, "create_event_subscription", {"url": "https://hooks.example.test/e", "events": ["new_chat"]}
    )
    assert not created.is_error, text_of(created)
    subscription_id = (created.structured_content or {})["id"]

    listed = call(base_url, account, "list_event_subscriptions")
    updated = call(
        base_url,
        account,
        "update_event_subscription",
        {"subscription_id": subscription_id, "url": "https://hooks.example.test/f", "events": ["mailbox_paused"]},
    )
    refused = call(base_url, account, "create_event_subscription", {"url": "https://h.example.test", "events": ["x"]})
    deleted = call(base_url, account, "delete_event_subscription", {"subscription_id": subscription_id})
    gone = call(base_url, account, "get_event_subscription", {"subscription_id": subscription_id})

    assert [s["id"] for s in (listed.structured_content or {})["event_subscriptions"]] == [subscription_id]
    assert (updated.structured_content or {})["events"] == ["mailbox_paused"]
    assert refused.is_error
    assert not deleted.is_error
    assert gone.is_error and "not found" in text_of(gone)
    rest = client.get("/v1/event-subscriptions", headers=account.headers).json()["items"]
    assert rest == []
