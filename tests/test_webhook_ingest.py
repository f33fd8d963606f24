"""Telegram and Slack in webhook mode through chatbox's own faces: connection create/archive/resync with the
platform, `POST /v1/ingest/{platform}/{connection_id}`, delivery to the agent, and MCP sends — against real
HTTP stand-ins for the Bot API and the Web API on 127.0.0.1 (both database backends)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services.connections import resync_connection
from chatbox.store.models import Connection, Message
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_credential, create_mailbox
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import load_payload, payload_bytes
from tests.support.pipeline import new_signing_secret, running_consumer
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
PUBLIC_URL = "https://chatbox.example.test"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN) as api:
        yield api


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url=PUBLIC_URL,
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
    )


def compose(settings: Settings, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Runtime:
    """A process serving the built-in platforms, its Telegram and Slack connectors on the stand-ins."""
    return build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={
            "telegram": TelegramSettings(api_url=telegram_api.root),
            "slack": SlackSettings(api_url=slack_api.root + "/api/"),
        },
    )


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Iterator[Runtime]:
    built = compose(settings, telegram_api, slack_api)
    try:
        yield built
    finally:
        built.close()


def connect(client: TestClient, account: AccountKey, mailbox_id: str, platform: str, secrets: dict[str, str]) -> Json:
    response = client.post(
        f"/v1/mailboxes/{mailbox_id}/connections",
        json={"platform": platform, "secrets": secrets},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def telegram_connection(client: TestClient, account: AccountKey, **mailbox_fields: Any) -> tuple[Json, Json]:
    mailbox = create_mailbox(client, account, **mailbox_fields)
    return mailbox, connect(client, account, mailbox["id"], "telegram", {"bot_token": TELEGRAM_TOKEN})


def slack_connection(client: TestClient, account: AccountKey, **mailbox_fields: Any) -> tuple[Json, Json]:
    mailbox = create_mailbox(client, account, **mailbox_fields)
    secrets = {"bot_token": SLACK_TOKEN, "signing_secret": SLACK_SIGNING}
    return mailbox, connect(client, account, mailbox["id"], "slack", secrets)


def post_telegram(client: TestClient, connection: Json, body: bytes, secret: str | None) -> Any:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return client.post(f"/v1/ingest/telegram/{connection['id']}", content=body, headers=headers)


def post_slack(client: TestClient, connection: Json, body: bytes, **extra_headers: str) -> Any:
    headers = {**slack_signature_headers(SLACK_SIGNING, body), **extra_headers}
    return client.post(f"/v1/ingest/slack/{connection['id']}", content=body, headers=headers)


def stored(runtime: Runtime, connection_id: str) -> list[Message]:
    with runtime.db.session() as db:
        return list(
            db.scalars(select(Message).where(Message.connection_id == connection_id).order_by(Message.received_at))
        )


def webhook_secret(api: TelegramBotApi) -> str:
    return str(api.webhooks[TELEGRAM_TOKEN]["secret_token"])


# --- Telegram: connection lifecycle ---------------------------------------------------------------


def test_creating_a_telegram_connection_checks_the_token_and_registers_the_webhook(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)

    assert connection["ingest_url"] == f"{PUBLIC_URL}/v1/ingest/telegram/{connection['id']}"
    assert [call.method for call in telegram_api.calls] == ["getMe", "setWebhook"]
    assert telegram_api.webhooks[TELEGRAM_TOKEN]["url"] == connection["ingest_url"]
    assert connection["secret_names"] == ["bot_token", "webhook_secret"]
    assert connection["config"] == {
        "bot_id": TELEGRAM_BOT["id"],
        "bot_username": "chatbox_test_bot",
        "receive_mode": "webhook",
    }
    assert len(webhook_secret(telegram_api)) >= 32
    assert webhook_secret(telegram_api) not in json.dumps(connection)


def test_a_refused_bot_token_stores_nothing(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "telegram", "secrets": {"bot_token": "123:nope"}},
        headers=account.headers,
    )
    missing = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections", json={"platform": "telegram"}, headers=account.headers
    )

    body = assert_error(response, 422, "invalid_input")
    assert "BotFather" in body["message"] and "123:nope" not in body["message"]
    assert_error(missing, 422, "invalid_input")
    with runtime.db.session() as db:
        assert db.scalars(select(Connection)).all() == []
    assert telegram_api.webhooks == {}


def test_a_telegram_connection_over_the_credential_quota_unregisters_its_webhook_and_stores_nothing(
    account: AccountKey, telegram_api: TelegramBotApi, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    # The bot token fits; the webhook secret Telegram provisioning adds does not.
    tight = compose(runtime.settings.model_copy(update={"max_credentials_per_account": 1}), telegram_api, slack_api)
    try:
        with TestClient(create_app(tight)) as client:
            mailbox = create_mailbox(client, account)
            response = client.post(
                f"/v1/mailboxes/{mailbox['id']}/connections",
                json={"platform": "telegram", "secrets": {"bot_token": TELEGRAM_TOKEN}},
                headers=account.headers,
            )
    finally:
        tight.close()

    body = assert_error(response, 409, "quota_exceeded")
    assert "CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT=1" in body["message"]
    assert [call.method for call in telegram_api.calls] == ["getMe", "setWebhook", "deleteWebhook"]
    assert telegram_api.webhooks == {}
    with runtime.db.session() as db:
        assert db.scalars(select(Connection)).all() == []


def test_archiving_a_telegram_connection_deletes_its_webhook_and_closes_ingest(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    secret = webhook_secret(telegram_api)
    assert post_telegram(client, connection, payload_bytes("telegram", "private_text"), secret).status_code == 200

    archived = client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)
    after = post_telegram(client, connection, payload_bytes("telegram", "private_text", update_id=1), secret)

    assert archived.status_code == 200
    assert telegram_api.calls_of("deleteWebhook")
    assert TELEGRAM_TOKEN not in telegram_api.webhooks
    assert_error(after, 401)
    assert len(stored(runtime, connection["id"])) == 1


def test_resync_registers_a_new_secret_and_the_old_one_stops_working(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    old = webhook_secret(telegram_api)
    assert post_telegram(client, connection, payload_bytes("telegram", "private_text"), old).status_code == 200

    with runtime.db.session() as db:
        resync_connection(db, runtime.vault, runtime.platforms, connection["id"], public_url=PUBLIC_URL)
    new = webhook_secret(telegram_api)

    assert new != old
    assert post_telegram(client, connection, payload_bytes("telegram", "voice"), new).status_code == 200
    # A warm process may still take the old secret for up to a minute; any process that has not seen it refuses it.
    fresh = compose(runtime.settings, telegram_api, slack_api)
    try:
        with TestClient(create_app(fresh)) as other:
            assert_error(post_telegram(other, connection, payload_bytes("telegram", "sticker"), old), 403)
            assert post_telegram(other, connection, payload_bytes("telegram", "sticker"), new).status_code == 200
    finally:
        fresh.close()


# --- Telegram: ingest -----------------------------------------------------------------------------


def test_a_verified_update_is_stored_once_however_often_it_is_delivered(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    body = payload_bytes("telegram", "private_text")

    answers = [post_telegram(client, connection, body, webhook_secret(telegram_api)) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    [message] = stored(runtime, connection["id"])
    assert (message.external_id, message.text, message.sender_name) == (
        "5512345678:41",
        "Can you check the build?",
        "Ada Lovelace",
    )
    assert telegram_api.calls_of("sendMessage") == []  # no platform call on the ingest path


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong-" + "x" * 40, 403), ("", 401)])
def test_a_missing_or_wrong_secret_token_stores_nothing(
    client: TestClient, account: AccountKey, runtime: Runtime, secret: str | None, status: int
) -> None:
    _, connection = telegram_connection(client, account)

    response = post_telegram(client, connection, payload_bytes("telegram", "private_text"), secret)

    assert_error(response, status)
    assert stored(runtime, connection["id"]) == []


def test_wrong_secret_tokens_on_one_connection_get_429_while_telegram_itself_still_gets_in(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    strict = compose(runtime.settings.model_copy(update={"auth_failures_per_credential": 2}), telegram_api, slack_api)
    body = payload_bytes("telegram", "private_text")
    try:
        with (
            TestClient(create_app(strict), client=("198.51.100.7", 40000)) as attacker,
            TestClient(create_app(strict), client=("149.154.167.220", 443)) as telegram,
        ):
            wrong = [post_telegram(attacker, connection, body, "wrong-" + "x" * 40) for _ in range(2)]
            refused = post_telegram(attacker, connection, body, webhook_secret(telegram_api))
            pushed = post_telegram(telegram, connection, body, webhook_secret(telegram_api))
    finally:
        strict.close()

    assert [response.status_code for response in wrong] == [403, 403]
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) > 0
    assert pushed.status_code == 200
    assert len(stored(runtime, connection["id"])) == 1


def test_unknown_connection_and_wrong_platform_are_401(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    secret = webhook_secret(telegram_api)
    body = payload_bytes("telegram", "private_text")

    unknown = client.post(
        "/v1/ingest/telegram/conn_01JD3ZZZZZZZZZZZZZZZZZZZZZ",
        content=body,
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
    )
    malformed = client.post(
        "/v1/ingest/telegram/nope", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
    )
    other_platform = client.post(
        f"/v1/ingest/slack/{connection['id']}", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
    )
    no_such_platform = client.post(f"/v1/ingest/signal/{connection['id']}", content=body)

    for response in (unknown, malformed, other_platform):
        assert_error(response, 401)
    assert_error(no_such_platform, 404)
    assert stored(runtime, connection["id"]) == []


@pytest.mark.parametrize("body", [b"", b"{not json", b"[]", b'{"update_id": "x"}', b"\xff\xfe\x00", b"null"])
def test_junk_bodies_are_4xx_never_500(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, body: bytes
) -> None:
    _, connection = telegram_connection(client, account)

    response = post_telegram(client, connection, body, webhook_secret(telegram_api))

    assert_error(response, 400)
    assert stored(runtime, connection["id"]) == []


@pytest.mark.parametrize("payload", ["callback_query", "new_chat_members"])
def test_updates_chatbox_does_not_handle_are_acked_and_dropped(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, payload: str
) -> None:
    _, connection = telegram_connection(client, account)

    response = post_telegram(client, connection, payload_bytes("telegram", payload), webhook_secret(telegram_api))

    assert response.status_code == 200
    assert stored(runtime, connection["id"]) == []


def test_every_chat_kind_media_reply_and_edit_is_stored(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    _, connection = telegram_connection(client, account)
    secret = webhook_secret(telegram_api)
    names = ["private_text", "supergroup_reply", "group_text", "channel_post", "photo_caption", "document"]
    names += ["voice", "sticker", "edited_message"]

    for name in names:
        assert post_telegram(client, connection, payload_bytes("telegram", name), secret).status_code == 200

    messages = {m.external_id: m for m in stored(runtime, connection["id"])}
    assert len(messages) == len(names)
    assert messages["-1002233445566:1207"].reply_to_external_id == "-1002233445566:1199"
    assert messages["5512345678:41:edit:824061009"].event_type == "edit"
    assert messages["5512345678:45"].attachments == [
        {"kind": "sticker", "file_id": "CAACAgIAAxkBAAIBLmdP_sticker", "name": "👍", "size": 30267}
    ]


# --- Slack ----------------------------------------------------------------------------------------


def test_creating_a_slack_connection_learns_the_bot_identity(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi
) -> None:
    _, connection = slack_connection(client, account)

    assert [call.method for call in slack_api.calls] == ["auth.test"]
    assert connection["config"]["bot_user_id"] == "U0BOT"
    assert connection["config"]["bot_id"] == "B0BOT"
    assert connection["ingest_url"] == f"{PUBLIC_URL}/v1/ingest/slack/{connection['id']}"


def test_a_refused_slack_token_stores_nothing(client: TestClient, account: AccountKey, runtime: Runtime) -> None:
    mailbox = create_mailbox(client, account)

    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": "slack", "secrets": {"bot_token": "xoxb-nope", "signing_secret": SLACK_SIGNING}},
        headers=account.headers,
    )

    assert_error(response, 422, "invalid_input")
    with runtime.db.session() as db:
        assert db.scalars(select(Connection)).all() == []


def test_url_verification_is_answered_with_the_challenge(client: TestClient, account: AccountKey) -> None:
    _, connection = slack_connection(client, account)

    response = post_slack(client, connection, payload_bytes("slack", "url_verification"))

    assert response.status_code == 200
    assert response.json() == {"challenge": load_payload("slack", "url_verification")["challenge"]}


def test_unsigned_badly_signed_and_stale_slack_requests_store_nothing(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    _, connection = slack_connection(client, account)
    body = payload_bytes("slack", "channel_message")
    path = f"/v1/ingest/slack/{connection['id']}"

    unsigned = client.post(path, content=body)
    wrong = client.post(path, content=body, headers=slack_signature_headers("not-the-secret", body))
    stale = client.post(
        path, content=body, headers=slack_signature_headers(SLACK_SIGNING, body, int(time.time()) - 600)
    )

    assert_error(unsigned, 401)
    assert_error(wrong, 403)
    assert_error(stale, 403)
    assert stored(runtime, connection["id"]) == []


def test_slack_retries_are_acked_and_stored_once(client: TestClient, account: AccountKey, runtime: Runtime) -> None:
    _, connection = slack_connection(client, account)
    body = payload_bytes("slack", "channel_message")

    first = post_slack(client, connection, body)
    retries = [
        post_slack(client, connection, body, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
        for n in (1, 2, 3)
    ]

    assert [r.status_code for r in (first, *retries)] == [200, 200, 200, 200]
    [message] = stored(runtime, connection["id"])
    assert message.external_id == "C0GENERAL:1764170418.123456"


def test_mention_and_message_events_of_one_message_store_it_once(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    _, connection = slack_connection(client, account)
    mention = load_payload("slack", "app_mention")
    as_message = {**mention, "event_id": "Ev0AOTHER0001", "event": {**mention["event"], "type": "message"}}

    for envelope in (mention, as_message):
        assert post_slack(client, connection, json.dumps(envelope).encode()).status_code == 200

    assert len(stored(runtime, connection["id"])) == 1


def test_own_and_bot_messages_are_acked_and_dropped(client: TestClient, account: AccountKey, runtime: Runtime) -> None:
    _, connection = slack_connection(client, account)

    for name in ("own_message", "bot_message"):
        assert post_slack(client, connection, payload_bytes("slack", name)).status_code == 200

    assert stored(runtime, connection["id"]) == []


def test_threads_dms_and_files_are_stored(client: TestClient, account: AccountKey, runtime: Runtime) -> None:
    _, connection = slack_connection(client, account)

    for name in (
        "channel_message",
        "thread_reply",
        "im_message",
        "mpim_message",
        "private_channel_message",
        "file_share",
    ):
        assert post_slack(client, connection, payload_bytes("slack", name)).status_code == 200

    messages = {m.external_id: m for m in stored(runtime, connection["id"])}
    assert len(messages) == 6
    reply = messages["C0GENERAL:1764170418.123456:1764170500.000200"]
    assert reply.reply_to_external_id == "C0GENERAL:1764170418.123456"


def test_a_signed_junk_slack_body_is_400(client: TestClient, account: AccountKey, runtime: Runtime) -> None:
    _, connection = slack_connection(client, account)

    assert_error(post_slack(client, connection, b"definitely not json"), 400)
    assert stored(runtime, connection["id"]) == []


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def test_a_telegram_update_reaches_the_agent_as_a_signed_webhook(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime, receiver: WebhookReceiver
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="sig", value=secret)
    mailbox, connection = telegram_connection(
        client, account, webhook_url=receiver.url, signing_credential_id=credential["id"]
    )

    with running_consumer(runtime):
        body = payload_bytes("telegram", "supergroup_reply")
        assert post_telegram(client, connection, body, webhook_secret(telegram_api)).status_code == 200
        [request] = receiver.wait_for(1)

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["mailbox_id"] == mailbox["id"]
    assert payload["chat_id"] == "telegram:-1002233445566"
    assert payload["platform"] == "telegram"
    assert "ship it" in json.dumps(payload)


def test_a_slack_message_reaches_the_agent_as_a_signed_webhook(
    client: TestClient, account: AccountKey, runtime: Runtime, receiver: WebhookReceiver
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="sig", value=secret)
    mailbox, connection = slack_connection(
        client, account, webhook_url=receiver.url, signing_credential_id=credential["id"]
    )

    with running_consumer(runtime):
        assert post_slack(client, connection, payload_bytes("slack", "thread_reply")).status_code == 200
        [request] = receiver.wait_for(1)

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["chat_id"] == "slack:C0GENERAL"
    assert "and the changelog?" in json.dumps(payload)


# --- MCP sends reach the platform -----------------------------------------------------------------


def call_tool(runtime: Runtime, mailbox: Json, name: str, arguments: Json) -> types.CallToolResult:
    with serving(create_app(runtime)) as base_url:

        async def go() -> types.CallToolResult:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return await session.call_tool(name, arguments)

        return run_async(go)


def test_mcp_send_message_calls_telegram_send_message_for_the_chat(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_connection(client, account)
    post_telegram(client, connection, payload_bytes("telegram", "supergroup_reply"), webhook_secret(telegram_api))

    result = call_tool(
        runtime,
        mailbox,
        "send_message",
        {"chat_id": "telegram:-1002233445566", "text": "Shipping now.", "reply_to": "-1002233445566:1207"},
    )

    assert not result.is_error, text_of(result)
    [call] = telegram_api.calls_of("sendMessage")
    assert call.params["chat_id"] == -1002233445566
    assert call.params["text"] == "Shipping now."
    assert call.params["reply_parameters"]["message_id"] == 1207
    outbound = [m for m in stored(runtime, connection["id"]) if m.direction == "out"]
    assert [m.external_id for m in outbound] == ["-1002233445566:500"]


def test_mcp_send_to_a_user_who_blocked_the_bot_is_a_tool_error_with_advice(
    client: TestClient, account: AccountKey, telegram_api: TelegramBotApi, runtime: Runtime
) -> None:
    mailbox, connection = telegram_connection(client, account)
    post_telegram(client, connection, payload_bytes("telegram", "private_text"), webhook_secret(telegram_api))
    telegram_api.blocked_chats.add("5512345678")

    result = call_tool(runtime, mailbox, "telegram_send", {"chat_id": "5512345678", "text": "hello?"})

    assert result.is_error
    assert "blocked" in text_of(result)
    assert [m for m in stored(runtime, connection["id"]) if m.direction == "out"] == []


def test_mcp_slack_send_answers_in_the_thread_of_the_message(
    client: TestClient, account: AccountKey, slack_api: SlackWebApi, runtime: Runtime
) -> None:
    mailbox, connection = slack_connection(client, account)
    post_slack(client, connection, payload_bytes("slack", "thread_reply"))

    result = call_tool(
        runtime,
        mailbox,
        "send_message",
        {
            "chat_id": "slack:C0GENERAL",
            "text": "changelog <here>",
            "reply_to": "C0GENERAL:1764170418.123456:1764170500.000200",
        },
    )
    explicit = call_tool(
        runtime, mailbox, "slack_send", {"chat_id": "C0GENERAL", "text": "top level", "thread_ts": "1764170418.123456"}
    )

    assert not result.is_error, text_of(result)
    assert not explicit.is_error, text_of(explicit)
    first, second = slack_api.calls_of("chat.postMessage")
    assert (first.params["channel"], first.params["text"], first.params["thread_ts"]) == (
        "C0GENERAL",
        "changelog &lt;here&gt;",
        "1764170418.123456",
    )
    assert second.params["thread_ts"] == "1764170418.123456"
