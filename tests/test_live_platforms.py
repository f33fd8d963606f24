"""Telegram long polling and Slack Socket Mode end to end: the real API creates the connection (provision
picks the receive mode from CHATBOX_PUBLIC_URL), the live host runs the source against the stand-ins, a
platform message reaches the agent as a signed webhook, and an MCP send reaches the platform."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.local.live_host import LiveHost
from chatbox.runtime import Runtime
from chatbox.services.connections import get_connection
from connectors import builtin_platforms, webhook_platform_settings
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey, make_account
from tests.support.api import SIGNING_SECRET, assert_error, create_credential, create_mailbox
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.payloads import load_payload
from tests.support.pipeline import eventually, running_consumer
from tests.support.platforms import TELEGRAM_BOT, SlackWebApi, TelegramBotApi, running_slack, running_telegram
from tests.support.receiver import WebhookReceiver, running_receiver
from tests.support.slack_socket import SocketModeServer, wait_connected

Json = dict[str, Any]
TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SLACK_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SLACK_APP_TOKEN = "xapp-1-A0CHATBOX-3333333333333-0123456789abcdef"
# A laptop's chatbox dev: no public https URL, so `auto` picks polling and Socket Mode.
LOCAL_URL = "http://127.0.0.1:8000"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN, app_token=SLACK_APP_TOKEN) as api:
        yield api


@pytest.fixture
def runtime(db_url: str, tmp_path: Path, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Iterator[Runtime]:
    settings = Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url=LOCAL_URL,
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
    )
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={
            "telegram": TelegramSettings(api_url=telegram_api.root, poll_timeout=1),
            "slack": SlackSettings(api_url=slack_api.root + "/api/"),
        },
    )
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def signed_mailbox(client: TestClient, account: AccountKey, receiver: WebhookReceiver) -> Json:
    credential = create_credential(client, account, kind="hmac_signing")
    return create_mailbox(client, account, webhook_url=receiver.url, signing_credential_id=credential["id"])


def connect(client: TestClient, account: AccountKey, mailbox: Json, platform: str, secrets: dict[str, str]) -> Any:
    return client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": platform, "secrets": secrets},
        headers=account.headers,
    )


def call_tool(runtime: Runtime, mailbox: Json, name: str, arguments: Json) -> types.CallToolResult:
    with serving(create_app(runtime)) as base_url:

        async def go() -> types.CallToolResult:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                return await session.call_tool(name, arguments)

        return run_async(go)


def stored_config(runtime: Runtime, connection_id: str) -> dict[str, Any]:
    with runtime.db.session() as db:
        return dict(get_connection(db, None, connection_id).config)


def test_a_polled_telegram_message_reaches_the_agent_and_its_answer_reaches_telegram(
    runtime: Runtime, telegram_api: TelegramBotApi, receiver: WebhookReceiver
) -> None:
    account = make_account(runtime)
    with TestClient(create_app(runtime)) as client:
        mailbox = signed_mailbox(client, account, receiver)
        created = connect(client, account, mailbox, "telegram", {"bot_token": TELEGRAM_TOKEN})
    assert created.status_code == 201, created.text
    connection = created.json()
    assert connection["config"]["receive_mode"] == "polling"
    assert connection["secret_names"] == ["bot_token"]  # no webhook, so no webhook secret
    assert [call.method for call in telegram_api.calls] == ["getMe", "deleteWebhook"]

    update = load_payload("telegram", "private_text")
    telegram_api.push_update(TELEGRAM_TOKEN, update)
    with LiveHost(runtime, api_url="http://127.0.0.1:9", interval=0.1), running_consumer(runtime):
        [delivered] = receiver.wait_for(1, timeout=30)
        eventually(lambda: stored_config(runtime, connection["id"]).get("receive_cursor") == "824061002")

    payload = Webhook(SIGNING_SECRET).verify(delivered.body, delivered.headers)
    assert payload["chat_id"] == "telegram:5512345678"
    assert payload["message"]["text"] == "Can you check the build?"

    result = call_tool(runtime, mailbox, "send_message", {"chat_id": "telegram:5512345678", "text": "On it."})
    assert not result.is_error, text_of(result)
    [sent] = telegram_api.calls_of("sendMessage")
    assert (sent.params["chat_id"], sent.params["text"]) == (5512345678, "On it.")


def test_a_slack_socket_mode_event_reaches_the_agent_and_its_answer_reaches_slack(
    runtime: Runtime, slack_api: SlackWebApi, receiver: WebhookReceiver
) -> None:
    account = make_account(runtime)
    with TestClient(create_app(runtime)) as client:
        mailbox = signed_mailbox(client, account, receiver)
        created = connect(client, account, mailbox, "slack", {"bot_token": SLACK_TOKEN, "app_token": SLACK_APP_TOKEN})
    assert created.status_code == 201, created.text
    connection = created.json()
    assert connection["config"]["receive_mode"] == "socket"
    socket = slack_api.socket
    assert isinstance(socket, SocketModeServer)

    with LiveHost(runtime, api_url="http://127.0.0.1:9", interval=0.1), running_consumer(runtime):
        wait_connected(socket, timeout=30)
        envelope = socket.push_event(load_payload("slack", "channel_message"))
        [delivered] = receiver.wait_for(1, timeout=30)
        eventually(lambda: socket.acked() == [envelope])

    payload = Webhook(SIGNING_SECRET).verify(delivered.body, delivered.headers)
    assert payload["chat_id"] == "slack:C0GENERAL"
    assert payload["message"]["text"].startswith("deploy <https://ci.example.com/412|build 412> & tell")

    result = call_tool(runtime, mailbox, "slack_send", {"chat_id": "C0GENERAL", "text": "deployed"})
    assert not result.is_error, text_of(result)
    [posted] = slack_api.calls_of("chat.postMessage")
    assert (posted.params["channel"], posted.params["text"]) == ("C0GENERAL", "deployed")


def test_a_slack_connection_without_a_public_url_or_an_app_token_is_a_422_naming_the_token(
    runtime: Runtime, slack_api: SlackWebApi
) -> None:
    account = make_account(runtime)
    with TestClient(create_app(runtime)) as client:
        mailbox = create_mailbox(client, account)
        response = connect(client, account, mailbox, "slack", {"bot_token": SLACK_TOKEN})

    body = assert_error(response, 422)
    assert "secrets.app_token" in body["message"] and "xapp-" in body["message"]
    assert slack_api.calls == []


def test_lambda_settings_force_webhooks_whatever_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOX_TELEGRAM_MODE", "polling")
    monkeypatch.setenv("CHATBOX_SLACK_MODE", "socket")
    monkeypatch.setenv("CHATBOX_TELEGRAM_API_URL", "http://127.0.0.1:9")
    assert (TelegramSettings().mode, SlackSettings().mode) == ("polling", "socket")

    forced = webhook_platform_settings()

    telegram, slack = forced["telegram"], forced["slack"]
    assert isinstance(telegram, TelegramSettings) and isinstance(slack, SlackSettings)
    assert (telegram.mode, slack.mode) == ("webhook", "events")
    assert telegram.api_url == "http://127.0.0.1:9"  # everything else still from the environment
