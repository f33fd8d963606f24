"""The Telegram connector against a real HTTP stand-in for the Bot API on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from chatbox.domain.errors import (
    ConnectorUnavailableError,
    InvalidInputError,
    PlatformRefusedError,
    RateLimitedError,
    UnknownOutcomeError,
)
from chatbox.ports.connector import ConnectionContext, OutboundMessage
from chatbox.ports.ingest import (
    ProvisionRequest,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from connectors.telegram.connector import TelegramConnector
from tests.support.platforms import (
    TELEGRAM_BOT,
    Answer,
    TelegramBotApi,
    running_telegram,
    telegram_chat_migrated,
    telegram_rate_limit,
)

TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHAT = "5512345678"


@pytest.fixture
def api() -> Iterator[TelegramBotApi]:
    with running_telegram({TOKEN: TELEGRAM_BOT}) as stand_in:
        yield stand_in


@pytest.fixture
def connector(api: TelegramBotApi) -> Iterator[TelegramConnector]:
    built = TelegramConnector(api.root, max_retry_wait=2.0)
    try:
        yield built
    finally:
        built.close()


def target(token: str = TOKEN) -> ConnectionContext:
    return ConnectionContext("conn_01JD3AAAAAAAAAAAAAAAAAAAAA", "telegram", {}, {"bot_token": token})


def test_provision_checks_the_token_and_sets_the_webhook_with_a_long_random_secret(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    url = "https://chatbox.example.test/v1/ingest/telegram/conn_01JD3AAAAAAAAAAAAAAAAAAAAA"

    provisioned = connector.provision(
        ProvisionRequest("conn_01JD3AAAAAAAAAAAAAAAAAAAAA", {}, {"bot_token": TOKEN}, url)
    )

    assert [call.method for call in api.calls] == ["getMe", "setWebhook"]
    webhook = api.webhooks[TOKEN]
    secret = provisioned.secrets["webhook_secret"]
    assert webhook["url"] == url
    assert webhook["secret_token"] == secret
    assert len(secret) >= 32 and all(c.isalnum() or c in "_-" for c in secret)
    assert webhook["allowed_updates"] == [
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "message_reaction",
    ]
    assert provisioned.config == {
        "bot_id": TELEGRAM_BOT["id"],
        "bot_username": "chatbox_test_bot",
        "receive_mode": "webhook",
    }
    again = connector.provision(ProvisionRequest("conn_01JD3AAAAAAAAAAAAAAAAAAAAA", {}, {"bot_token": TOKEN}, url))
    assert again.secrets["webhook_secret"] != secret


def test_provision_refuses_a_wrong_token_without_echoing_it(connector: TelegramConnector) -> None:
    with pytest.raises(InvalidInputError) as caught:
        connector.provision(ProvisionRequest("c", {}, {"bot_token": "123:wrong"}, "https://x.test/hook"))

    assert "BotFather" in caught.value.message
    assert "123:wrong" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_provision_needs_a_bot_token(connector: TelegramConnector) -> None:
    with pytest.raises(InvalidInputError, match="bot_token"):
        connector.provision(ProvisionRequest("c", {}, {}, "https://x.test/hook"))


def test_provision_explains_a_webhook_url_telegram_refuses(api: TelegramBotApi) -> None:
    forced = TelegramConnector(api.root, mode="webhook")  # a loopback URL in webhook mode: as a proxy setup would
    try:
        with pytest.raises(InvalidInputError, match="CHATBOX_PUBLIC_URL") as caught:
            forced.provision(
                ProvisionRequest("c", {}, {"bot_token": TOKEN}, "http://127.0.0.1:8000/v1/ingest/telegram/c")
            )
    finally:
        forced.close()
    assert "CHATBOX_TELEGRAM_MODE=polling" in caught.value.message


@pytest.mark.parametrize(
    ("mode", "url", "receive"),
    [
        ("auto", "https://chatbox.example.com/v1/ingest/telegram/c", "webhook"),
        ("auto", "http://chatbox.example.com/v1/ingest/telegram/c", "polling"),
        ("auto", "https://127.0.0.1:8443/v1/ingest/telegram/c", "polling"),
        ("auto", "http://localhost:8000/v1/ingest/telegram/c", "polling"),
        ("auto", "https://chatbox.internal/v1/ingest/telegram/c", "polling"),
        ("polling", "https://chatbox.example.com/v1/ingest/telegram/c", "polling"),
    ],
    ids=["auto-public-https", "auto-http", "auto-loopback", "auto-localhost", "auto-internal", "polling-forced"],
)
def test_provision_chooses_webhook_or_polling_from_the_mode_and_the_ingest_url(
    api: TelegramBotApi, mode: Literal["auto", "webhook", "polling"], url: str, receive: str
) -> None:
    chooser = TelegramConnector(api.root, mode=mode)
    api.webhooks[TOKEN] = {"url": "https://old.example.com/hook"}
    try:
        provisioned = chooser.provision(ProvisionRequest("c", {}, {"bot_token": TOKEN}, url))
    finally:
        chooser.close()

    assert provisioned.config["receive_mode"] == receive
    if receive == "polling":
        assert [call.method for call in api.calls] == ["getMe", "deleteWebhook"]
        assert TOKEN not in api.webhooks
        assert provisioned.secrets == {}  # no webhook, so no webhook secret
    else:
        assert [call.method for call in api.calls] == ["getMe", "setWebhook"]
        assert api.webhooks[TOKEN]["url"] == url
        assert provisioned.secrets["webhook_secret"]


def test_provision_reports_an_unreachable_api_as_unavailable() -> None:
    connector = TelegramConnector("http://127.0.0.1:9", timeout=2.0)
    try:
        with pytest.raises(ConnectorUnavailableError):
            connector.provision(ProvisionRequest("c", {}, {"bot_token": TOKEN}, "https://x.test/hook"))
    finally:
        connector.close()


def test_deprovision_deletes_the_webhook(api: TelegramBotApi, connector: TelegramConnector) -> None:
    connector.provision(ProvisionRequest("c", {}, {"bot_token": TOKEN}, "https://x.test/hook"))

    connector.deprovision(ConnectionContext("c", "telegram", {}, {"bot_token": TOKEN, "webhook_secret": "s" * 43}))

    assert api.calls_of("deleteWebhook")
    assert TOKEN not in api.webhooks


def test_send_posts_to_the_chat_and_answers_the_chat_qualified_message_id(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    message_id = connector.send(target(), OutboundMessage(CHAT, "On my way.", None, {})).external_id

    [call] = api.calls_of("sendMessage")
    assert call.headers["content-type"] == "application/json"
    assert call.params["chat_id"] == int(CHAT)
    assert call.params["text"] == "On my way."
    assert "reply_parameters" not in call.params
    assert message_id == f"{CHAT}:500"
    assert api.calls_of("getMe") == []  # the bot is learned at provision: a send is one request per part


def test_send_replies_to_a_referenced_message_and_passes_telegram_options(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    connector.send(
        target(), OutboundMessage("-1002233445566", "yes", "-1002233445566:1207", {"disable_notification": True})
    )

    [call] = api.calls_of("sendMessage")
    assert call.params["reply_parameters"] == {"message_id": 1207, "allow_sending_without_reply": True}
    assert call.params["disable_notification"] is True


def test_long_text_is_split_in_order_on_paragraphs_and_only_the_first_part_replies(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    paragraphs = [f"paragraph {i} " + "x" * 1500 for i in range(6)]
    text = "\n\n".join(paragraphs)

    message_id = connector.send(target(), OutboundMessage(CHAT, text, f"{CHAT}:41", {})).external_id

    calls = api.calls_of("sendMessage")
    sent = [str(call.params["text"]) for call in calls]
    assert len(sent) == 3
    assert all(len(part) <= 4096 for part in sent)
    assert "\n\n".join(sent) == text
    assert "reply_parameters" in calls[0].params
    assert all("reply_parameters" not in call.params for call in calls[1:])
    assert message_id == f"{CHAT}:500"


def test_a_short_429_is_waited_out_and_retried_once(api: TelegramBotApi, connector: TelegramConnector) -> None:
    api.script["sendMessage"] = [telegram_rate_limit(1)]
    started = time.monotonic()

    message_id = connector.send(target(), OutboundMessage(CHAT, "hello", None, {})).external_id

    assert time.monotonic() - started >= 1.0
    assert len(api.calls_of("sendMessage")) == 2
    assert message_id.startswith(f"{CHAT}:")


def test_a_long_429_is_rate_limited_with_its_retry_after(api: TelegramBotApi, connector: TelegramConnector) -> None:
    api.script["sendMessage"] = [telegram_rate_limit(35)]

    with pytest.raises(RateLimitedError) as caught:
        connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))

    assert caught.value.retry_after == 35
    assert len(api.calls_of("sendMessage")) == 1


def test_a_second_429_after_the_retry_is_rate_limited(api: TelegramBotApi, connector: TelegramConnector) -> None:
    api.script["sendMessage"] = [telegram_rate_limit(1), telegram_rate_limit(1)]

    with pytest.raises(RateLimitedError):
        connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))


def test_a_user_who_blocked_the_bot_is_a_clear_refusal(api: TelegramBotApi, connector: TelegramConnector) -> None:
    api.blocked_chats.add(CHAT)

    with pytest.raises(PlatformRefusedError) as caught:
        connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))

    assert "blocked" in caught.value.message
    assert "/start" in caught.value.message


def test_an_unknown_chat_is_a_clear_refusal(api: TelegramBotApi, connector: TelegramConnector) -> None:
    api.unknown_chats.add("999")

    with pytest.raises(PlatformRefusedError, match="(?i)chat not found"):
        connector.send(target(), OutboundMessage("999", "hello", None, {}))


def test_a_revoked_token_makes_the_connector_unavailable(connector: TelegramConnector) -> None:
    with pytest.raises(ConnectorUnavailableError, match="reconnect"):
        connector.send(target("123:revoked"), OutboundMessage(CHAT, "hello", None, {}))


def test_the_secret_token_header_is_compared_to_the_stored_secret(connector: TelegramConnector) -> None:
    connection = ConnectionContext("c", "telegram", {}, {"bot_token": TOKEN, "webhook_secret": "s" * 43})

    connector.verify(connection, WebhookRequest({"x-telegram-bot-api-secret-token": "s" * 43}, b"{}"))
    with pytest.raises(WebhookForbiddenError):
        connector.verify(connection, WebhookRequest({"x-telegram-bot-api-secret-token": "s" * 42 + "t"}, b"{}"))
    with pytest.raises(WebhookUnauthenticatedError):
        connector.verify(connection, WebhookRequest({}, b"{}"))


def test_a_group_that_became_a_supergroup_is_a_refusal_naming_the_new_chat(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    api.script["sendMessage"] = [telegram_chat_migrated(-1009876543210)]

    with pytest.raises(PlatformRefusedError, match="telegram:-1009876543210"):
        connector.send(target(), OutboundMessage("-4001234", "hello", None, {}))

    assert len(api.calls_of("sendMessage")) == 1


def test_an_answer_that_is_not_the_bot_apis_json_makes_the_connector_unavailable(
    api: TelegramBotApi, connector: TelegramConnector
) -> None:
    api.script["sendMessage"] = [Answer(502, "<html><body>502 Bad Gateway</body></html>")]

    with pytest.raises(ConnectorUnavailableError, match="HTTP 502"):
        connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))


def test_an_unreachable_api_on_send_is_unavailable_and_no_error_names_the_token() -> None:
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = TelegramConnector(f"http://127.0.0.1:{port}", timeout=2.0)
    try:
        with pytest.raises(ConnectorUnavailableError, match="cannot be reached") as caught:
            connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))
    finally:
        connector.close()

    assert TOKEN not in "".join(traceback.format_exception(caught.value))


def test_a_send_that_left_and_got_no_answer_in_time_is_an_unknown_outcome() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        connector = TelegramConnector(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        try:
            with pytest.raises(UnknownOutcomeError, match="did not answer sendMessage .ReadTimeout") as caught:
                connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))
        finally:
            connector.close()

    assert TOKEN not in "".join(traceback.format_exception(caught.value))


def test_a_closed_connector_is_unavailable(connector: TelegramConnector) -> None:
    connector.close()

    with pytest.raises(ConnectorUnavailableError, match="closed"):
        connector.send(target(), OutboundMessage(CHAT, "hello", None, {}))


def test_no_log_line_or_error_names_the_bot_token(
    api: TelegramBotApi, connector: TelegramConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: httpx names each request's URL at INFO, httpcore more at DEBUG
    api.blocked_chats.add("999")
    errors: list[BaseException] = []

    connector.provision(ProvisionRequest("c", {}, {"bot_token": TOKEN}, "https://x.test/hook"))
    connector.send(target(), OutboundMessage(CHAT, "hello", f"{CHAT}:41", {}))
    for refused in (target(), target("123:revoked")):
        try:
            connector.send(refused, OutboundMessage("999", "hello", None, {}))
        except (PlatformRefusedError, ConnectorUnavailableError) as exc:
            errors.append(exc)
    connector.deprovision(ConnectionContext("c", "telegram", {}, {"bot_token": TOKEN, "webhook_secret": "s" * 43}))

    assert len(errors) == 2
    assert any(record.name == "httpx" for record in caplog.records)  # the capture did see the request lines
    assert TOKEN not in caplog.text
    assert "123:revoked" not in caplog.text
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all("123:revoked" not in "".join(traceback.format_exception(exc)) for exc in errors)


def test_importing_the_connector_leaves_the_environment_alone() -> None:
    probe = "import os; import connectors.telegram.connector; print(sorted(os.environ))"
    env = {key: value for key, value in os.environ.items() if key != "PTB_TIMEDELTA"}

    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert "PTB_TIMEDELTA" not in result.stdout
