"""The Slack connector against a real HTTP stand-in for the Web API on 127.0.0.1, with real signatures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError, PlatformRefusedError, RateLimitedError
from chatbox.ports.connector import ConnectionContext, OutboundMessage
from chatbox.ports.ingest import (
    ProvisionRequest,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from connectors.slack.connector import SlackConnector
from tests.support.payloads import payload_bytes
from tests.support.pipeline import eventually
from tests.support.platforms import SlackWebApi, running_slack, slack_rate_limit, slack_signature_headers

TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
SECRETS = {"bot_token": TOKEN, "signing_secret": SIGNING}
INGEST_URL = "https://x.test/v1/ingest/slack/c"  # public https: the Events API in the default mode (auto)


@pytest.fixture
def api() -> Iterator[SlackWebApi]:
    with running_slack(TOKEN) as stand_in:
        yield stand_in


@pytest.fixture
def connector(api: SlackWebApi) -> Iterator[SlackConnector]:
    built = SlackConnector(api.root + "/api/", max_retry_wait=2.0)
    try:
        yield built
    finally:
        built.close()


def target() -> ConnectionContext:
    return ConnectionContext("conn_01JD3BBBBBBBBBBBBBBBBBBBBB", "slack", {"bot_user_id": "U0BOT"}, SECRETS)


def connection() -> ConnectionContext:
    return ConnectionContext(
        "conn_01JD3BBBBBBBBBBBBBBBBBBBBB", "slack", {"bot_user_id": "U0BOT", "bot_id": "B0BOT"}, SECRETS
    )


def signed(body: bytes, timestamp: int | None = None, secret: str = SIGNING) -> WebhookRequest:
    headers = {k.lower(): v for k, v in slack_signature_headers(secret, body, timestamp).items()}
    return WebhookRequest(headers, body)


def test_provision_learns_the_bots_user_id_and_bot_id(api: SlackWebApi, connector: SlackConnector) -> None:
    provisioned = connector.provision(ProvisionRequest("c", {}, SECRETS, "https://x.test/v1/ingest/slack/c"))

    assert provisioned.config == {
        "bot_user_id": "U0BOT",
        "bot_id": "B0BOT",
        "team_id": "T0ACME",
        "team": "Acme",
        "receive_mode": "webhook",
    }
    assert provisioned.secrets == {}
    assert [call.method for call in api.calls] == ["auth.test"]


def test_provision_refuses_a_wrong_token(connector: SlackConnector) -> None:
    with pytest.raises(InvalidInputError, match="invalid_auth"):
        connector.provision(
            ProvisionRequest("c", {}, {"bot_token": "xoxb-wrong", "signing_secret": SIGNING}, INGEST_URL)
        )


def test_provision_needs_both_secrets(connector: SlackConnector) -> None:
    with pytest.raises(InvalidInputError, match="signing_secret"):
        connector.provision(ProvisionRequest("c", {}, {"bot_token": TOKEN}, INGEST_URL))


def test_a_request_signed_as_slack_signs_is_verified(connector: SlackConnector) -> None:
    connector.verify(connection(), signed(payload_bytes("slack", "channel_message")))


def _wrong_or_stale(kind: str) -> WebhookRequest:
    now = int(time.time())  # at run time: a window computed at collection time could be stale itself
    body = b'{"type":"event_callback"}'
    if kind == "wrong-secret":
        return signed(body, secret="another-secret")
    if kind == "stale":
        return signed(body, timestamp=now - 301)
    if kind == "future":
        return signed(body, timestamp=now + 301)
    if kind == "junk-timestamp":
        return WebhookRequest({"x-slack-signature": "v0=00", "x-slack-request-timestamp": "not-a-number"}, b"{}")
    return WebhookRequest({"x-slack-signature": "v0=00", "x-slack-request-timestamp": str(now)}, b"\xff")


@pytest.mark.parametrize("kind", ["wrong-secret", "stale", "future", "junk-timestamp", "not-utf8"])
def test_wrong_or_stale_signatures_are_forbidden(connector: SlackConnector, kind: str) -> None:
    with pytest.raises(WebhookForbiddenError):
        connector.verify(connection(), _wrong_or_stale(kind))


def test_a_tampered_body_is_forbidden(connector: SlackConnector) -> None:
    original = signed(b'{"type":"event_callback","n":1}')

    with pytest.raises(WebhookForbiddenError):
        connector.verify(connection(), WebhookRequest(original.headers, b'{"type":"event_callback","n":2}'))


def test_unsigned_requests_are_unauthenticated(connector: SlackConnector) -> None:
    with pytest.raises(WebhookUnauthenticatedError):
        connector.verify(connection(), WebhookRequest({}, b"{}"))


def test_send_posts_escaped_text_to_the_channel(api: SlackWebApi, connector: SlackConnector) -> None:
    message_id = connector.send(target(), OutboundMessage("C0GENERAL", "if a < b && c > d", None, {})).external_id

    [call] = api.calls_of("chat.postMessage")
    assert call.params["channel"] == "C0GENERAL"
    assert call.params["text"] == "if a &lt; b &amp;&amp; c &gt; d"
    assert "thread_ts" not in call.params
    assert message_id == f"C0GENERAL:{call_ts(api)}"


def call_ts(api: SlackWebApi) -> str:
    """The ts Slack gave the latest post."""
    return str([message for posts in api.posted.values() for message in posts][-1]["ts"])


@pytest.mark.parametrize("reply_to", ["C0GENERAL:1764170418.123456", "C0GENERAL:1764170418.123456:1764170500.000200"])
def test_reply_to_any_message_of_a_thread_lands_in_that_thread(
    api: SlackWebApi, connector: SlackConnector, reply_to: str
) -> None:
    message_id = connector.send(target(), OutboundMessage("C0GENERAL", "here", reply_to, {})).external_id

    [call] = api.calls_of("chat.postMessage")
    assert call.params["thread_ts"] == "1764170418.123456"
    assert message_id == f"C0GENERAL:1764170418.123456:{call_ts(api)}"


def test_slack_send_options_thread_ts_and_reply_broadcast(api: SlackWebApi, connector: SlackConnector) -> None:
    connector.send(
        target(),
        OutboundMessage(
            "C0GENERAL",
            "here",
            None,
            {"thread_ts": "1764170418.123456", "reply_broadcast": True, "unfurl_links": False},
        ),
    )

    [call] = api.calls_of("chat.postMessage")
    assert (call.params["thread_ts"], call.params["reply_broadcast"], call.params["unfurl_links"]) == (
        "1764170418.123456",
        True,
        False,
    )


def test_a_short_429_is_waited_out_and_retried_once(api: SlackWebApi, connector: SlackConnector) -> None:
    api.script["chat.postMessage"] = [slack_rate_limit(1)]
    started = time.monotonic()

    connector.send(target(), OutboundMessage("C0GENERAL", "hello", None, {}))

    assert time.monotonic() - started >= 1.0
    assert len(api.calls_of("chat.postMessage")) == 2


def test_a_long_429_is_rate_limited_with_retry_after(api: SlackWebApi, connector: SlackConnector) -> None:
    api.script["chat.postMessage"] = [slack_rate_limit(30)]

    with pytest.raises(RateLimitedError) as caught:
        connector.send(target(), OutboundMessage("C0GENERAL", "hello", None, {}))

    assert caught.value.retry_after == 30


def test_an_unknown_channel_is_a_clear_refusal(connector: SlackConnector) -> None:
    with pytest.raises(PlatformRefusedError, match="channel_not_found"):
        connector.send(target(), OutboundMessage("C0NOWHERE", "hello", None, {}))


def test_a_revoked_token_makes_the_connector_unavailable(connector: SlackConnector) -> None:
    revoked = ConnectionContext("c", "slack", {}, {"bot_token": "xoxb-revoked"})

    with pytest.raises(ConnectorUnavailableError, match="invalid_auth"):
        connector.send(revoked, OutboundMessage("C0GENERAL", "hello", None, {}))


def test_names_are_resolved_in_the_background_once_and_then_carried(
    api: SlackWebApi, connector: SlackConnector
) -> None:
    body = payload_bytes("slack", "channel_message")

    [first] = connector.parse(connection(), signed(body)).messages
    connector.names.wait_idle()
    [second] = connector.parse(connection(), signed(body)).messages

    assert (first.sender_name, first.chat_name) == (None, None)
    assert (second.sender_name, second.chat_name) == ("ada", "#general")
    assert len(api.calls_of("users.info")) == 1
    assert len(api.calls_of("conversations.info")) == 1
    eventually(lambda: len(api.calls) == 2)
