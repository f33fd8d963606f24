"""Edits, deletions, reactions and typing on Telegram and Slack, both ways, through chatbox's own faces: the
platforms' events through `POST /v1/ingest/...` reach the agent rendered, and the MCP tools reach the Bot API and
Web API stand-ins on 127.0.0.1 in their wire formats (both database backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Message
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import create_mailbox
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import load_payload
from tests.support.pipeline import running_consumer
from tests.support.platforms import (
    TELEGRAM_BOT,
    SlackWebApi,
    TelegramBotApi,
    running_slack,
    running_telegram,
    slack_signature_headers,
)
from tests.support.receiver import WebhookReceiver, running_receiver

Json = dict[str, Any]
TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SLACK_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SLACK_SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
GROUP = "-1002233445566"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN) as api:
        yield api


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
    )


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Iterator[Runtime]:
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={
            "telegram": TelegramSettings(api_url=telegram_api.root),
            "slack": SlackSettings(api_url=slack_api.root + "/api/"),
        },
    )
    try:
        yield built
    finally:
        built.close()


def _connect(
    client: TestClient, account: AccountKey, platform: str, secrets: Json, **mailbox: Any
) -> tuple[Json, Json]:
    box = create_mailbox(client, account, **mailbox)
    response = client.post(
        f"/v1/mailboxes/{box['id']}/connections",
        json={"platform": platform, "secrets": secrets},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return box, response.json()


def telegram(client: TestClient, account: AccountKey, **mailbox: Any) -> tuple[Json, Json]:
    return _connect(client, account, "telegram", {"bot_token": TELEGRAM_TOKEN}, **mailbox)


def slack(client: TestClient, account: AccountKey, **mailbox: Any) -> tuple[Json, Json]:
    return _connect(client, account, "slack", {"bot_token": SLACK_TOKEN, "signing_secret": SLACK_SIGNING}, **mailbox)


def post_telegram(client: TestClient, api: TelegramBotApi, connection: Json, update: Json) -> None:
    secret = str(api.webhooks[TELEGRAM_TOKEN]["secret_token"])
    response = client.post(
        f"/v1/ingest/telegram/{connection['id']}",
        content=json.dumps(update).encode(),
        headers={"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert response.status_code == 200, response.text


def post_slack(client: TestClient, connection: Json, envelope: Json) -> None:
    body = json.dumps(envelope).encode()
    response = client.post(
        f"/v1/ingest/slack/{connection['id']}", content=body, headers=slack_signature_headers(SLACK_SIGNING, body)
    )
    assert response.status_code == 200, response.text


def mcp(runtime: Runtime, mailbox: Json, *calls: tuple[str, Json]) -> list[types.CallToolResult]:
    """Call the mailbox's tools in order, in one MCP session."""
    with serving(create_app(runtime)) as base_url:

        async def go() -> list[types.CallToolResult]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return [await session.call_tool(name, arguments) for name, arguments in calls]

        return run_async(go)


def listing(runtime: Runtime, mailbox: Json) -> tuple[list[str], str]:
    with serving(create_app(runtime)) as base_url:

        async def go() -> tuple[list[str], str]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                tools = (await session.list_tools()).tools
                return [t.name for t in tools], session.instructions or ""

        return run_async(go)


def messages(runtime: Runtime, connection: Json) -> list[Message]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Message).where(Message.connection_id == connection["id"]).order_by(Message.id)))


def the_message(runtime: Runtime, connection: Json, direction: str, external_id: str) -> Message:
    [found] = [m for m in messages(runtime, connection) if m.direction == direction and m.external_id == external_id]
    return found


def ok(result: types.CallToolResult) -> Json:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


# --- Telegram -------------------------------------------------------------------------------------------


def _reaction_update(update_id: int, message_id: int, old: list[str], new: list[str]) -> Json:
    update = load_payload("telegram", "message_reaction")
    change = update["message_reaction"]
    change["chat"] = {"id": int(GROUP), "title": "Release crew", "type": "supergroup"}
    change["message_id"] = message_id
    change["old_reaction"] = [{"type": "emoji", "emoji": e} for e in old]
    change["new_reaction"] = [{"type": "emoji", "emoji": e} for e in new]
    update["update_id"] = update_id
    return update


def test_telegram_tools_reach_the_bot_api_and_read_chat_shows_the_result(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram(client, account)
    post_telegram(client, telegram_api, connection, load_payload("telegram", "supergroup_reply"))
    theirs = the_message(runtime, connection, "in", f"{GROUP}:1207")

    sent, edited, reacted, typing, deleted, page = mcp(
        runtime,
        mailbox,
        ("send_message", {"chat_id": f"telegram:{GROUP}", "text": "Shipping now."}),
        ("edit_message", {"message_id": f"{GROUP}:500", "chat_id": f"telegram:{GROUP}", "text": "Shipped."}),
        ("react", {"message_id": theirs.id, "emoji": "👍"}),
        ("typing", {"chat_id": f"telegram:{GROUP}"}),
        ("delete_message", {"message_id": f"{GROUP}:500", "chat_id": f"telegram:{GROUP}"}),
        ("read_chat", {"chat_id": f"telegram:{GROUP}"}),
    )

    ours = ok(sent)["message_id"]
    assert ok(edited)["message_id"] == ours
    [edit] = telegram_api.calls_of("editMessageText")
    assert edit.params == {"chat_id": int(GROUP), "message_id": 500, "text": "Shipped."}
    ok(reacted)
    [reaction] = telegram_api.calls_of("setMessageReaction")
    assert reaction.params == {
        "chat_id": int(GROUP),
        "message_id": 1207,
        "reaction": [{"type": "emoji", "emoji": "👍"}],
    }
    ok(typing)
    [action] = telegram_api.calls_of("sendChatAction")
    assert action.params == {"chat_id": int(GROUP), "action": "typing"}
    ok(deleted)
    [deletion] = telegram_api.calls_of("deleteMessage")
    assert deletion.params == {"chat_id": int(GROUP), "message_id": 500}
    [line] = [m["text"] for m in ok(page)["messages"] if m["id"] == ours]
    assert line == "(deleted) Shipped. (edited)"
    names, instructions = listing(runtime, mailbox)
    assert {"edit_message", "delete_message", "react", "typing"} <= set(names)
    assert "telegram: all of them. Telegram tells bots nothing of deletions" in instructions


def test_editing_or_deleting_someone_elses_message_is_a_tool_error_without_a_platform_call(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram(client, account)
    post_telegram(client, telegram_api, connection, load_payload("telegram", "supergroup_reply"))
    theirs = the_message(runtime, connection, "in", f"{GROUP}:1207")

    edit, delete = mcp(
        runtime,
        mailbox,
        ("edit_message", {"message_id": theirs.id, "text": "rewritten"}),
        ("delete_message", {"message_id": theirs.id}),
    )

    for result in (edit, delete):
        assert result.is_error
        assert "not by you" in text_of(result) and "only your own messages" in text_of(result)
    assert telegram_api.calls_of("editMessageText") == [] and telegram_api.calls_of("deleteMessage") == []


@pytest.mark.parametrize(
    "message_id", ["msg_01JD3AAAAAAAAAAAAAAAAAAAAA", "msg_nonsense", f"{GROUP}:999999"], ids=["unknown", "bad", "ext"]
)
def test_an_unknown_message_id_is_a_tool_error_without_a_platform_call(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, message_id: str
) -> None:
    mailbox, connection = telegram(client, account)
    post_telegram(client, telegram_api, connection, load_payload("telegram", "supergroup_reply"))

    edit, react = mcp(
        runtime,
        mailbox,
        ("edit_message", {"message_id": message_id, "chat_id": f"telegram:{GROUP}", "text": "x"}),
        ("react", {"message_id": message_id, "chat_id": f"telegram:{GROUP}", "emoji": "👍"}),
    )

    for result in (edit, react):
        assert result.is_error
        assert "no message" in text_of(result)
    assert [c.method for c in telegram_api.calls] == ["getMe", "setWebhook"]


def test_another_mailboxs_message_id_is_unknown(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram(client, account)
    post_telegram(client, telegram_api, connection, load_payload("telegram", "supergroup_reply"))
    theirs = the_message(runtime, connection, "in", f"{GROUP}:1207")
    other, _ = slack(client, account, name="other")

    [result] = mcp(runtime, other, ("react", {"message_id": theirs.id, "emoji": "👍"}))

    assert result.is_error and "no message" in text_of(result)


def test_telegram_reactions_and_edits_reach_the_agent_rendered_and_update_the_stored_message(
    client: TestClient,
    account: AccountKey,
    telegram_api: TelegramBotApi,
    runtime: Runtime,
    receiver: WebhookReceiver,
) -> None:
    mailbox, connection = telegram(client, account, webhook_url=receiver.url)
    post_telegram(client, telegram_api, connection, load_payload("telegram", "supergroup_reply"))
    [sent] = mcp(runtime, mailbox, ("send_message", {"chat_id": f"telegram:{GROUP}", "text": "Shipping now."}))
    ok(sent)
    edit = load_payload("telegram", "supergroup_reply")
    edit["update_id"] += 100
    edit["edited_message"] = {**edit.pop("message"), "text": "ship it tonight", "edit_date": 1764171000}

    with running_consumer(runtime):
        post_telegram(client, telegram_api, connection, _reaction_update(824061050, 500, [], ["👍"]))
        post_telegram(client, telegram_api, connection, _reaction_update(824061051, 500, ["👍"], []))
        post_telegram(client, telegram_api, connection, edit)
        requests = receiver.wait_for(4)

    bodies = [r.json() for r in requests]
    added, removed, edited = bodies[1:]
    assert added["type"] == "reaction"
    assert added["content"].startswith(
        "In Release crew (telegram:-1002233445566), Ada Lovelace reacted 👍 to your message"
    )
    assert '"Shipping now."' in added["content"]
    assert added["message"]["reaction"] == {"emoji": "👍", "removed": False}
    assert added["message"]["target_message_id"] == ok(sent)["message_id"]
    assert "removed their 👍 reaction from your message" in removed["content"]
    assert edited["type"] == "edit"
    assert "edited" in edited["content"] and "It now reads: ship it tonight" in edited["content"]
    assert the_message(runtime, connection, "in", f"{GROUP}:1207").text == "ship it tonight"
    assert the_message(runtime, connection, "in", f"{GROUP}:1207").edited_at is not None


# --- Slack ------------------------------------------------------------------------------------------------


def test_slack_tools_reach_the_web_api_and_typing_is_not_offered(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack(client, account)
    post_slack(client, connection, load_payload("slack", "channel_message"))
    theirs = the_message(runtime, connection, "in", "C0GENERAL:1764170418.123456")

    [sent] = mcp(runtime, mailbox, ("send_message", {"chat_id": "slack:C0GENERAL", "text": "on it <soon>"}))
    ours = str(ok(sent)["external_id"])  # `C0GENERAL:<ts>`, the ts Slack gave the post
    ts = ours.split(":", 1)[1]
    edited, reacted, unreacted, deleted, typing = mcp(
        runtime,
        mailbox,
        ("edit_message", {"message_id": ours, "chat_id": "slack:C0GENERAL", "text": "done"}),
        ("react", {"message_id": theirs.id, "emoji": "👍"}),
        ("react", {"message_id": theirs.id, "emoji": ":eyes:", "remove": True}),
        ("delete_message", {"message_id": ours, "chat_id": "slack:C0GENERAL"}),
        ("typing", {"chat_id": "slack:C0GENERAL"}),
    )
    names, instructions = listing(runtime, mailbox)

    for result in (sent, edited, reacted, unreacted, deleted):
        ok(result)
    [update] = slack_api.calls_of("chat.update")
    assert update.params == {"channel": "C0GENERAL", "ts": ts, "text": "done"}
    [add] = slack_api.calls_of("reactions.add")
    assert add.params == {"channel": "C0GENERAL", "timestamp": "1764170418.123456", "name": "+1"}
    [remove] = slack_api.calls_of("reactions.remove")
    assert remove.params["name"] == "eyes"
    [delete] = slack_api.calls_of("chat.delete")
    assert delete.params == {"channel": "C0GENERAL", "ts": ts}
    assert typing.is_error and "typing is not available" in text_of(typing)
    assert {"edit_message", "delete_message", "react"} <= set(names) and "typing" not in names
    assert "slack: no typing indicators" in instructions


def test_an_emoji_slack_cannot_name_is_a_tool_error_without_a_platform_call(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack(client, account)
    post_slack(client, connection, load_payload("slack", "channel_message"))
    theirs = the_message(runtime, connection, "in", "C0GENERAL:1764170418.123456")

    [result] = mcp(runtime, mailbox, ("react", {"message_id": theirs.id, "emoji": "🦩"}))

    assert result.is_error and "name" in text_of(result)
    assert slack_api.calls_of("reactions.add") == []


def test_slack_edits_deletions_and_reactions_reach_the_agent_rendered(
    client: TestClient, account: AccountKey, runtime: Runtime, receiver: WebhookReceiver
) -> None:
    mailbox, connection = slack(client, account, webhook_url=receiver.url)
    post_slack(client, connection, load_payload("slack", "channel_message"))
    [sent] = mcp(runtime, mailbox, ("send_message", {"chat_id": "slack:C0GENERAL", "text": "deploying now"}))
    reaction = load_payload("slack", "reaction_added")
    reaction["event"]["item"]["ts"] = str(ok(sent)["external_id"]).split(":", 1)[1]  # on the agent's post

    with running_consumer(runtime):
        post_slack(client, connection, load_payload("slack", "message_changed"))
        post_slack(client, connection, reaction)
        post_slack(client, connection, load_payload("slack", "message_deleted"))
        requests = receiver.wait_for(4)

    edited, reacted, deleted = (r.json() for r in requests[1:])
    assert edited["type"] == "edit"
    assert "It now reads: deploy build 413" in edited["content"]
    assert reacted["type"] == "reaction"
    assert 'reacted :thumbsup: to your message "deploying now"' in reacted["content"]
    assert deleted["type"] == "delete"
    assert deleted["content"].startswith("In #general (slack:C0GENERAL), someone deleted ")
    assert 's message "deploy build 413".' in deleted["content"]  # its author's name, as the name cache knows it
    original = the_message(runtime, connection, "in", "C0GENERAL:1764170418.123456")
    assert original.text == "deploy build 413"
    assert original.deleted_at is not None
    assert original.edited_at is not None
