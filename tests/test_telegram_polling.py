"""Telegram long polling (`connectors.telegram.polling`) against the Bot API stand-in's getUpdates."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from chatbox.domain.errors import PlatformRefusedError
from chatbox.ports.connector import ConnectionContext
from connectors.telegram.polling import TelegramPolling
from tests.support.live import ListSink, running_source
from tests.support.payloads import load_payload
from tests.support.pipeline import eventually
from tests.support.platforms import TELEGRAM_BOT, TelegramBotApi, running_telegram

TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CONNECTION = "conn_01JD3AAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture
def api() -> Iterator[TelegramBotApi]:
    with running_telegram({TOKEN: TELEGRAM_BOT}) as stand_in:
        yield stand_in


def source(api: TelegramBotApi, poll_timeout: int = 1) -> TelegramPolling:
    return TelegramPolling(api.root, poll_timeout=poll_timeout, min_backoff=0.05, max_backoff=0.2)


def ctx(token: str = TOKEN) -> ConnectionContext:
    return ConnectionContext(CONNECTION, "telegram", {"receive_mode": "polling"}, {"bot_token": token})


def text_update(update_id: int, message_id: int, text: str) -> dict[str, object]:
    update = load_payload("telegram", "private_text")
    update["update_id"] = update_id
    update["message"] = {**update["message"], "message_id": message_id, "text": text}
    return update


def test_queued_updates_reach_the_sink_once_and_the_offset_is_saved_after_them(api: TelegramBotApi) -> None:
    api.push_update(TOKEN, text_update(100, 41, "first"))
    api.push_update(TOKEN, text_update(101, 42, "second"))
    sink = ListSink()

    with running_source(source(api), ctx(), sink) as running:
        eventually(lambda: len(sink.messages) == 2)
        api.push_update(TOKEN, text_update(102, 43, "third"))
        eventually(lambda: len(sink.messages) == 3)
        eventually(lambda: sink.saved[-1:] == ["103"])
        eventually(lambda: len(api.calls_of("getUpdates")) >= 4)  # a few empty polls that deliver nothing again
    assert not running.errors

    assert [m.text for m in sink.messages] == ["first", "second", "third"]
    assert [m.external_message_id for m in sink.messages] == ["5512345678:41", "5512345678:42", "5512345678:43"]
    assert sink.saved == ["102", "103"]
    first = api.calls_of("getUpdates")[0].params
    assert "offset" not in first and first["timeout"] == 1
    assert first["allowed_updates"] == [
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "message_reaction",
    ]
    assert api.getupdates_offsets()[-1] == 103


def test_updates_a_sink_did_not_commit_come_again_and_the_offset_waits_for_them(api: TelegramBotApi) -> None:
    api.push_update(TOKEN, text_update(200, 50, "kept"))
    sink = ListSink(refuse=2)

    with running_source(source(api), ctx(), sink) as running:
        eventually(lambda: len(sink.messages) == 1)
        eventually(lambda: sink.saved == ["201"])
    assert not running.errors

    assert sink.refused == 2
    assert [m.text for m in sink.messages] == ["kept"]
    offsets = api.getupdates_offsets()
    # The three calls that returned update 200 passed no offset: nothing was confirmed before the accept.
    assert offsets[:3] == [None, None, None]
    assert 201 in offsets


def test_a_restart_resumes_from_the_stored_cursor(api: TelegramBotApi) -> None:
    api.push_update(TOKEN, text_update(300, 60, "before"))
    sink = ListSink()
    with running_source(source(api), ctx(), sink):
        eventually(lambda: sink.saved == ["301"])

    # Telegram still holds update 300 until an offset beyond it arrives; the stored cursor says so.
    api.push_update(TOKEN, text_update(301, 61, "after"))
    again = ListSink(cursor=sink.cursor())
    with running_source(source(api), ctx(), again):
        eventually(lambda: again.saved == ["302"])

    assert [m.text for m in again.messages] == ["after"]
    assert api.getupdates_offsets()[-1] == 302


def test_updates_that_are_no_message_are_confirmed_without_an_accept(api: TelegramBotApi) -> None:
    api.push_update(TOKEN, {**load_payload("telegram", "callback_query"), "update_id": 400})
    api.push_update(TOKEN, {"update_id": 401, "message": "not an object"})
    sink = ListSink()

    with running_source(source(api), ctx(), sink):
        eventually(lambda: sink.saved == ["402"])

    assert sink.messages == []


def test_a_revoked_token_stops_the_source_with_a_refusal_instead_of_polling_on(api: TelegramBotApi) -> None:
    del api.tokens[TOKEN]
    sink = ListSink()

    with running_source(source(api), ctx(), sink) as running:
        running.thread.join(5)
        assert not running.thread.is_alive()

    assert len(running.errors) == 1
    error = running.errors[0]
    assert isinstance(error, PlatformRefusedError)
    assert "@BotFather" in str(error) and TOKEN not in str(error) and TOKEN.split(":")[1] not in str(error)
    assert len(api.calls_of("getUpdates")) == 1


def test_a_connection_without_a_token_is_refused_at_once(api: TelegramBotApi) -> None:
    sink = ListSink()
    with running_source(source(api), ConnectionContext(CONNECTION, "telegram", {}, {}), sink) as running:
        running.thread.join(5)
    assert [type(error) for error in running.errors] == [PlatformRefusedError]
    assert api.calls == []


def test_a_webhook_set_behind_its_back_is_deleted_and_polling_goes_on(api: TelegramBotApi) -> None:
    api.webhooks[TOKEN] = {"url": "https://elsewhere.example.com/hook"}
    api.push_update(TOKEN, text_update(500, 70, "after the conflict"))
    sink = ListSink()

    with running_source(source(api), ctx(), sink):
        eventually(lambda: len(sink.messages) == 1)

    assert TOKEN not in api.webhooks
    methods = [call.method for call in api.calls]
    assert methods[:3] == ["getUpdates", "deleteWebhook", "getUpdates"]


def test_an_unreachable_api_is_retried_with_backoff_and_names_no_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_telegram({TOKEN: TELEGRAM_BOT}) as api:
        root = api.root
    sink = ListSink()  # the stand-in is gone: nothing listens on its port any more
    polling = TelegramPolling(root, poll_timeout=1, min_backoff=0.05, max_backoff=0.1)
    with running_source(polling, ctx(), sink) as running:
        eventually(lambda: sum("getUpdates failed" in r.getMessage() for r in caplog.records) >= 3)
    assert not running.errors
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text


def test_stop_returns_promptly_during_a_long_poll(api: TelegramBotApi) -> None:
    sink = ListSink()
    with running_source(source(api, poll_timeout=50), ctx(), sink) as running:
        eventually(lambda: api.calls_of("getUpdates"))
        time.sleep(0.3)  # the long poll is out, waiting on the stand-in for up to 50 s
        running.finish(timeout=3)  # bounded far below the poll timeout
    assert not running.errors
    assert sink.saved == []
