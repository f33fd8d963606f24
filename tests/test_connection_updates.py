"""Updating live connections: PATCH with a new Telegram bot token against the Bot API stand-in, rotating the
inbound token, and archive + recreate keeping one chat per address (both database backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.compose import build_runtime
from chatbox.domain.errors import InvalidInputError
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services.connections import connection_context, resync_connection
from chatbox.services.focus import list_chats
from chatbox.services.sending import send_message
from chatbox.store.models import Chat, Connection, ServiceEvent
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_mailbox
from tests.support.payloads import load_payload
from tests.support.platforms import TELEGRAM_BOT, SlackWebApi, TelegramBotApi, running_slack, running_telegram

Json = dict[str, Any]
OLD_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
NEW_TOKEN = "7012345678:AAFreshlyRotatedTokenFromBotFather01"
REFUSED_TOKEN = "7012345678:AARevokedLongAgoTokenNobodyKnows002"
PUBLIC_URL = "https://chatbox.example.test"
SLACK_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({OLD_TOKEN: TELEGRAM_BOT, NEW_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", db_url=db_url, vault_key=generate_key(), public_url=PUBLIC_URL)


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN) as api:
        yield api


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


def connect_telegram(client: TestClient, account: AccountKey, mailbox_id: str, token: str = OLD_TOKEN) -> Json:
    response = client.post(
        f"/v1/mailboxes/{mailbox_id}/connections",
        json={"platform": "telegram", "secrets": {"bot_token": token}},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def push_update(client: TestClient, api: TelegramBotApi, token: str, connection: Json, update_id: int) -> None:
    secret = str(api.webhooks[token]["secret_token"])
    update = load_payload("telegram", "private_text")
    update["update_id"] = update_id
    update["message"]["message_id"] = 1000 + update_id
    response = client.post(
        f"/v1/ingest/telegram/{connection['id']}",
        content=json.dumps(update).encode(),
        headers={"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert response.status_code == 200, response.text


def opened_secrets(runtime: Runtime, connection_id: str) -> dict[str, str]:
    with runtime.db.session() as db:
        connection = db.get(Connection, connection_id)
        assert connection is not None
        return dict(connection_context(db, runtime.vault, connection).secrets)


def chats_of(client: TestClient, account: AccountKey, mailbox_id: str) -> list[Json]:
    response = client.get(f"/v1/mailboxes/{mailbox_id}/chats", headers=account.headers)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["items"]
    return items


def test_a_new_bot_token_is_set_up_with_telegram_and_keeps_the_chats(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)
    connection = connect_telegram(client, account, mailbox["id"])
    push_update(client, telegram_api, OLD_TOKEN, connection, update_id=1)
    [chat] = chats_of(client, account, mailbox["id"])

    response = client.patch(
        f"/v1/connections/{connection['id']}", json={"secrets": {"bot_token": NEW_TOKEN}}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["id"] == connection["id"]
    assert telegram_api.webhooks[NEW_TOKEN]["url"] == connection["ingest_url"]
    assert opened_secrets(runtime, connection["id"])["bot_token"] == NEW_TOKEN
    push_update(client, telegram_api, NEW_TOKEN, connection, update_id=2)
    assert [c["id"] for c in chats_of(client, account, mailbox["id"])] == [chat["id"]]
    assert chats_of(client, account, mailbox["id"])[0]["unread"] == 2


def test_a_refused_bot_token_is_422_and_changes_nothing(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)
    connection = connect_telegram(client, account, mailbox["id"])
    before = opened_secrets(runtime, connection["id"])

    response = client.patch(
        f"/v1/connections/{connection['id']}",
        json={"config": {"note": "rotated"}, "secrets": {"bot_token": REFUSED_TOKEN}},
        headers=account.headers,
    )

    body = assert_error(response, 422, "invalid_input")
    assert REFUSED_TOKEN not in body["message"]
    assert opened_secrets(runtime, connection["id"]) == before
    after = client.get(f"/v1/connections/{connection['id']}", headers=account.headers).json()
    assert after["config"] == connection["config"] and after["updated_at"] == connection["updated_at"]
    assert REFUSED_TOKEN not in telegram_api.webhooks
    push_update(client, telegram_api, OLD_TOKEN, connection, update_id=1)  # the old setup still works


def test_patching_an_archived_or_unknown_connection_is_refused(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    mailbox = create_mailbox(client, account)
    connection = connect_telegram(client, account, mailbox["id"])
    patch = {"secrets": {"bot_token": NEW_TOKEN}}

    foreign = client.patch(f"/v1/connections/{connection['id']}", json=patch, headers=other_account.headers)
    client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)
    archived = client.patch(f"/v1/connections/{connection['id']}", json=patch, headers=account.headers)

    assert_error(foreign, 404)
    assert_error(archived, 409, "conflict")


def test_rotating_the_inbound_token_stops_the_old_one_at_once(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json={"platform": "signal"}, headers=account.headers
    )
    connection = response.json()
    message = {"external_chat_id": "+4915", "external_message_id": "m-1", "text": "hi"}

    def post(token: str, external_id: str) -> Any:
        return client.post(
            f"/v1/connections/{connection['id']}/messages",
            json={**message, "external_message_id": external_id},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert post(connection["inbound_token"], "m-1").status_code == 202  # proven, and remembered by this process
    rotated = client.post(f"/v1/connections/{connection['id']}/rotate-inbound-token", headers=account.headers)

    assert rotated.status_code == 200, rotated.text
    new_token = rotated.json()["inbound_token"]
    assert new_token.startswith("inb_") and new_token != connection["inbound_token"]
    assert_error(post(connection["inbound_token"], "m-2"), 401)
    assert post(new_token, "m-3").status_code == 202
    shown = client.get(f"/v1/connections/{connection['id']}", headers=account.headers).json()
    assert new_token not in str(shown)


def test_archiving_and_recreating_a_connection_keeps_one_chat_per_id(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)
    first = connect_telegram(client, account, mailbox["id"])
    push_update(client, telegram_api, OLD_TOKEN, first, update_id=1)
    client.delete(f"/v1/connections/{first['id']}", headers=account.headers)
    second = connect_telegram(client, account, mailbox["id"], NEW_TOKEN)

    push_update(client, telegram_api, NEW_TOKEN, second, update_id=1)

    with runtime.db.session() as db:
        summaries = list_chats(db, mailbox["id"])
        [chat] = db.scalars(select(Chat).where(Chat.mailbox_id == mailbox["id"])).all()
    assert [s.id for s in summaries] == [c["id"] for c in chats_of(client, account, mailbox["id"])]
    assert len(summaries) == 1 and summaries[0].unread == 2
    assert chat.connection_id == second["id"]


def test_a_chat_of_an_archived_connection_is_answered_through_its_successor(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)
    first = connect_telegram(client, account, mailbox["id"])
    push_update(client, telegram_api, OLD_TOKEN, first, update_id=1)
    [chat] = chats_of(client, account, mailbox["id"])
    client.delete(f"/v1/connections/{first['id']}", headers=account.headers)
    second = connect_telegram(client, account, mailbox["id"], NEW_TOKEN)
    del telegram_api.tokens[OLD_TOKEN]  # revoked at BotFather: only the new connection's token can send

    with runtime.db.session() as db:
        receipt = send_message(db, runtime.vault, runtime.platforms, mailbox["id"], "still here", chat=chat["id"])

    assert receipt.chat_id == chat["id"]
    assert telegram_api.sent_texts() == ["still here"]
    with runtime.db.session() as db:
        [stored] = db.scalars(select(Chat).where(Chat.mailbox_id == mailbox["id"])).all()
    assert stored.connection_id == second["id"]


def test_a_slack_connection_is_checked_with_auth_test_before_it_changes(
    client: TestClient, account: AccountKey, runtime: Runtime, slack_api: SlackWebApi
) -> None:
    mailbox = create_mailbox(client, account)
    created = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "slack", "secrets": {"bot_token": SLACK_TOKEN, "signing_secret": "8f742231b10e"}},
        headers=account.headers,
    )
    assert created.status_code == 201, created.text
    connection = created.json()
    path = f"/v1/connections/{connection['id']}"

    refused = client.patch(path, json={"secrets": {"bot_token": "xoxb-revoked-0000"}}, headers=account.headers)
    rotated = client.patch(path, json={"secrets": {"signing_secret": "0a1b2c3d4e5f"}}, headers=account.headers)

    assert_error(refused, 422)
    assert rotated.status_code == 200, rotated.text
    assert [call.method for call in slack_api.calls] == ["auth.test", "auth.test", "auth.test"]
    assert opened_secrets(runtime, connection["id"]) == {"bot_token": SLACK_TOKEN, "signing_secret": "0a1b2c3d4e5f"}


def test_a_resync_the_platform_refuses_is_a_connection_error_event(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)
    connection = connect_telegram(client, account, mailbox["id"])
    del telegram_api.tokens[OLD_TOKEN]  # revoked at BotFather

    with runtime.db.session() as db, pytest.raises(InvalidInputError):
        resync_connection(db, runtime.vault, runtime.platforms, connection["id"], public_url=PUBLIC_URL)

    with runtime.db.session() as db:
        [event] = db.scalars(select(ServiceEvent)).all()
        assert (event.type, event.mailbox_id, event.account_id) == (
            "connection_error",
            mailbox["id"],
            account.account_id,
        )
        assert event.data["connection_id"] == connection["id"] and OLD_TOKEN not in str(event.data)
