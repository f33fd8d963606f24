"""Slack Socket Mode (`connectors.slack.socket_mode`) against a real WebSocket stand-in for Slack's side."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chatbox.domain.errors import InvalidInputError, PlatformRefusedError
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.ingest import ProvisionRequest
from connectors.slack.connector import SlackConnector
from connectors.slack.socket_mode import SlackSocketMode
from tests.support.live import ListSink, running_source
from tests.support.payloads import load_payload
from tests.support.pipeline import eventually
from tests.support.platforms import SlackWebApi, running_slack
from tests.support.slack_socket import SocketModeServer, wait_connected

BOT_TOKEN = "xoxb-1111-2222-socketmodetest"
APP_TOKEN = "xapp-1-A0CHATBOX-3333-abcdefabcdef"
CONNECTION = "conn_01JD3BBBBBBBBBBBBBBBBBBBBB"
LOOPBACK_INGEST = f"http://127.0.0.1:8000/v1/ingest/slack/{CONNECTION}"


@pytest.fixture
def api() -> Iterator[SlackWebApi]:
    with running_slack(BOT_TOKEN, app_token=APP_TOKEN) as stand_in:
        yield stand_in


def socket_of(api: SlackWebApi) -> SocketModeServer:
    assert api.socket is not None
    return api.socket


def source(api: SlackWebApi) -> SlackSocketMode:
    return SlackSocketMode(api.root + "/", timeout=5, min_backoff=0.05, max_backoff=0.2)


def ctx(app_token: str = APP_TOKEN) -> ConnectionContext:
    secrets = {"bot_token": BOT_TOKEN, "app_token": app_token} if app_token else {"bot_token": BOT_TOKEN}
    return ConnectionContext(
        CONNECTION, "slack", {"receive_mode": "socket", "bot_user_id": "U0BOT", "bot_id": "B0BOT"}, secrets
    )


def channel_event(event_id: str, ts: str, text: str) -> dict[str, Any]:
    body = load_payload("slack", "channel_message")
    body["event_id"] = event_id
    body["event"] = {**body["event"], "ts": ts, "event_ts": ts, "text": text}
    return body


def test_an_event_reaches_the_sink_and_its_envelope_is_acknowledged_only_after_the_accept(api: SlackWebApi) -> None:
    server = socket_of(api)
    gate = threading.Event()
    sink = ListSink(gate=gate)

    with running_source(source(api), ctx(), sink) as running:
        wait_connected(server)
        envelope = server.push_event(channel_event("Ev01", "1764170418.000100", "deploy &amp; tell me"))
        assert sink.entered.wait(10)
        time.sleep(0.2)  # the accept is in progress: no acknowledgement may have gone out
        assert server.acked() == []
        gate.set()
        eventually(lambda: server.acked() == [envelope])
    assert not running.errors

    assert [(m.external_message_id, m.text) for m in sink.messages] == [
        ("C0GENERAL:1764170418.000100", "deploy & tell me")
    ]
    opened = api.calls_of("apps.connections.open")
    assert len(opened) == 1 and opened[0].headers["authorization"] == f"Bearer {APP_TOKEN}"


def test_an_event_the_sink_did_not_commit_stays_unacknowledged_until_it_is(api: SlackWebApi) -> None:
    server = socket_of(api)
    sink = ListSink(refuse=2)

    with running_source(source(api), ctx(), sink):
        wait_connected(server)
        envelope = server.push_event(channel_event("Ev02", "1764170419.000100", "kept"))
        eventually(lambda: server.acked() == [envelope])

    assert sink.refused == 2
    assert [m.text for m in sink.messages] == ["kept"]


def test_a_refresh_request_reconnects_and_nothing_is_lost_or_doubled(api: SlackWebApi) -> None:
    server = socket_of(api)
    sink = ListSink()

    with running_source(source(api), ctx(), sink) as running:
        wait_connected(server)
        first = server.push_event(channel_event("Ev03", "1764170420.000100", "before"))
        eventually(lambda: server.acked() == [first])
        server.disconnect("refresh_requested")
        between = server.push_event(channel_event("Ev04", "1764170421.000100", "between"))  # no connection now
        eventually(lambda: server.connections == 2 and server.acked() == [first, between])
        after = server.push_event(channel_event("Ev05", "1764170422.000100", "after"))
        eventually(lambda: server.acked() == [first, between, after])
    assert not running.errors

    assert [m.text for m in sink.messages] == ["before", "between", "after"]
    assert server.tickets_issued == 2 and server.refused_tickets == 0
    assert [number for _, number in server.delivered()] == [1, 2, 2]


def test_an_envelope_left_unacknowledged_at_stop_comes_again_to_the_next_run(api: SlackWebApi) -> None:
    server = socket_of(api)
    down = ListSink(refuse=-1)
    with running_source(source(api), ctx(), down):
        wait_connected(server)
        envelope = server.push_event(channel_event("Ev06", "1764170423.000100", "not lost"))
        eventually(lambda: down.refused >= 2)
    assert server.acked() == [] and down.messages == []

    up = ListSink()
    with running_source(source(api), ctx(), up):
        eventually(lambda: server.acked() == [envelope])

    assert [m.text for m in up.messages] == ["not lost"]
    assert [number for _, number in server.delivered()] == [1, 2]


def test_events_that_are_not_for_the_agent_are_acknowledged_without_an_accept(api: SlackWebApi) -> None:
    server = socket_of(api)
    sink = ListSink()

    with running_source(source(api), ctx(), sink):
        wait_connected(server)
        own = server.push_event(load_payload("slack", "own_message"))
        bot = server.push_event(load_payload("slack", "bot_message"))
        eventually(lambda: server.acked() == [own, bot])

    assert sink.messages == [] and not sink.entered.is_set()


def test_a_revoked_app_token_stops_the_source_with_a_refusal(api: SlackWebApi) -> None:
    wrong = "xapp-1-A0CHATBOX-9999-revoked"
    sink = ListSink()
    with running_source(source(api), ctx(app_token=wrong), sink) as running:
        running.thread.join(5)
        assert not running.thread.is_alive()

    assert [type(error) for error in running.errors] == [PlatformRefusedError]
    assert "invalid_auth" in str(running.errors[0]) and wrong not in str(running.errors[0])
    assert len(api.calls_of("apps.connections.open")) == 1


def test_a_connection_without_an_app_token_is_refused_at_once(api: SlackWebApi) -> None:
    sink = ListSink()
    with running_source(source(api), ctx(app_token=""), sink) as running:
        running.thread.join(5)
    assert [type(error) for error in running.errors] == [PlatformRefusedError]
    assert "app_token" in str(running.errors[0])
    assert api.calls == []


def test_a_socket_server_that_is_gone_is_retried_without_naming_the_token(
    api: SlackWebApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = socket_of(api)
    server.close()  # apps.connections.open still answers, but nothing listens on the URL
    sink = ListSink()
    with running_source(source(api), ctx(), sink) as running:
        eventually(lambda: len(api.calls_of("apps.connections.open")) >= 3)
    assert not running.errors
    assert APP_TOKEN not in caplog.text and BOT_TOKEN not in caplog.text


def test_stop_returns_promptly_on_a_quiet_socket(api: SlackWebApi) -> None:
    server = socket_of(api)
    sink = ListSink()
    with running_source(source(api), ctx(), sink) as running:
        wait_connected(server)
        running.finish(timeout=5)  # a read slice plus the close handshake (close_timeout 2 s)
    assert not running.errors


# --- provision: which mode, and what each needs -------------------------------------------------------


@pytest.fixture
def connector(api: SlackWebApi) -> Iterator[SlackConnector]:
    built = SlackConnector(api.root + "/")
    try:
        yield built
    finally:
        built.close()


def test_auto_with_a_loopback_url_chooses_socket_mode_and_checks_both_tokens(
    api: SlackWebApi, connector: SlackConnector
) -> None:
    provisioned = connector.provision(
        ProvisionRequest(CONNECTION, {}, {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN}, LOOPBACK_INGEST)
    )

    assert provisioned.config["receive_mode"] == "socket"
    assert provisioned.config["bot_user_id"] == "U0BOT"
    assert [call.method for call in api.calls] == ["apps.connections.open", "auth.test"]


def test_socket_mode_without_an_app_token_names_it(connector: SlackConnector) -> None:
    with pytest.raises(InvalidInputError) as caught:
        connector.provision(ProvisionRequest(CONNECTION, {}, {"bot_token": BOT_TOKEN}, LOOPBACK_INGEST))
    assert "secrets.app_token" in caught.value.message and "xapp-" in caught.value.message


@pytest.mark.parametrize("token", ["xapp-1-A0CHATBOX-9999-wrong", BOT_TOKEN], ids=["wrong-app-token", "bot-token"])
def test_socket_mode_refuses_an_app_token_slack_refuses(connector: SlackConnector, token: str) -> None:
    with pytest.raises(InvalidInputError, match="secrets.app_token") as caught:
        connector.provision(
            ProvisionRequest(CONNECTION, {}, {"bot_token": BOT_TOKEN, "app_token": token}, LOOPBACK_INGEST)
        )
    assert token not in caught.value.message


@pytest.mark.parametrize(
    ("mode", "url", "receive"),
    [
        ("auto", "https://chatbox.example.com/v1/ingest/slack/c", "webhook"),
        ("events", LOOPBACK_INGEST, "webhook"),
        ("socket", "https://chatbox.example.com/v1/ingest/slack/c", "socket"),
    ],
    ids=["auto-public", "events-forced", "socket-forced"],
)
def test_the_mode_setting_and_the_ingest_url_choose_events_or_socket(
    api: SlackWebApi, mode: Any, url: str, receive: str
) -> None:
    chooser = SlackConnector(api.root + "/", mode=mode)
    secrets = {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN, "signing_secret": "8f742231b10e8888abcd99yyyzzz85a5"}
    try:
        provisioned = chooser.provision(ProvisionRequest(CONNECTION, {}, secrets, url))
    finally:
        chooser.close()
    assert provisioned.config["receive_mode"] == receive
    assert bool(api.calls_of("apps.connections.open")) == (receive == "socket")


def test_the_events_api_still_needs_the_signing_secret(api: SlackWebApi) -> None:
    events = SlackConnector(api.root + "/", mode="events")
    try:
        with pytest.raises(InvalidInputError, match="secrets.signing_secret"):
            events.provision(
                ProvisionRequest(CONNECTION, {}, {"bot_token": BOT_TOKEN, "app_token": APP_TOKEN}, LOOPBACK_INGEST)
            )
    finally:
        events.close()
