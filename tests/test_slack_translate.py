"""Slack Events API requests → normalized messages: pure translation on recorded payloads (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.normalized import ChatType
from connectors.slack.translate import (
    SlackIdentity,
    channel_display_name,
    envelope_to_outcome,
    escape_text,
    parse_event_body,
    thread_root,
    unescape_text,
    user_display_name,
)
from tests.support.payloads import load_payload

BOT = SlackIdentity(bot_user_id="U0BOT", bot_id="B0BOT")


def test_url_verification_is_answered_with_its_challenge() -> None:
    outcome = envelope_to_outcome(load_payload("slack", "url_verification"), BOT)

    assert outcome.messages == ()
    assert outcome.reply is not None
    assert outcome.reply.status == 200
    assert json.loads(outcome.reply.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_channel_message_keeps_the_channel_as_chat_and_unescapes_text() -> None:
    outcome = envelope_to_outcome(load_payload("slack", "channel_message"), BOT)

    assert outcome.delivery_key == "event:Ev0ACHANNEL01"
    [message] = outcome.messages
    assert message.external_chat_id == "C0GENERAL"
    assert message.external_message_id == "C0GENERAL:1764170418.123456"
    assert message.text == "deploy <https://ci.example.com/412|build 412> & tell <@U0GRACE> when done <3"
    assert message.sender_id == "U0ADA"
    assert message.chat_type is ChatType.channel
    assert message.sent_at == datetime.fromtimestamp(1764170418.123456, UTC)
    assert message.reply_to_external_id is None


def test_thread_reply_names_its_thread_so_answers_land_there() -> None:
    [message] = envelope_to_outcome(load_payload("slack", "thread_reply"), BOT).messages

    assert message.external_chat_id == "C0GENERAL"
    assert message.external_message_id == "C0GENERAL:1764170418.123456:1764170500.000200"
    assert message.reply_to_external_id == "C0GENERAL:1764170418.123456"
    assert thread_root(message.external_message_id) == "1764170418.123456"
    assert thread_root(message.reply_to_external_id) == "1764170418.123456"


@pytest.mark.parametrize(
    ("payload", "chat", "chat_type"),
    [
        ("im_message", "D0ADA", ChatType.direct),
        ("mpim_message", "G0MPDM01", ChatType.group),
        ("private_channel_message", "G0PRIVATE", ChatType.channel),
    ],
)
def test_dms_group_dms_and_private_channels(payload: str, chat: str, chat_type: ChatType) -> None:
    [message] = envelope_to_outcome(load_payload("slack", payload), BOT).messages

    assert message.external_chat_id == chat
    assert message.chat_type is chat_type


def test_app_mention_becomes_a_message_with_the_same_id_as_its_message_event() -> None:
    [mention] = envelope_to_outcome(load_payload("slack", "app_mention"), BOT).messages

    # The same message also arrives as a `message` event (other event_id): same id, so it is stored once.
    envelope = load_payload("slack", "app_mention")
    envelope["event"] = {**envelope["event"], "type": "message", "channel_type": "channel"}
    envelope["event_id"] = "Ev0AOTHER0001"
    [as_message] = envelope_to_outcome(envelope, BOT).messages

    assert mention.text == "<@U0BOT> what broke?"
    assert mention.chat_type is ChatType.channel
    assert mention.external_message_id == as_message.external_message_id == "C0GENERAL:1764170700.000400"


@pytest.mark.parametrize("payload", ["bot_message", "own_message"])
def test_bots_own_and_non_content_messages_are_ignored(payload: str) -> None:
    outcome = envelope_to_outcome(load_payload("slack", payload), BOT)

    assert outcome.messages == ()
    assert outcome.ignored


def test_the_bots_own_user_is_ignored_even_without_a_bot_id() -> None:
    envelope = load_payload("slack", "channel_message")
    envelope["event"] = {**envelope["event"], "user": "U0BOT"}

    assert envelope_to_outcome(envelope, BOT).messages == ()


def test_file_share_becomes_attachments_by_file_id() -> None:
    [message] = envelope_to_outcome(load_payload("slack", "file_share"), BOT).messages

    [image] = message.attachments
    assert (image.kind, image.file_id, image.name, image.mime_type, image.size) == (
        "image",
        "F0SCREEN01",
        "failure.png",
        "image/png",
        48213,
    )
    assert message.text == "screenshot of the failure"


def test_known_names_come_from_the_lookup_and_unknown_ones_stay_empty() -> None:
    names = {("user", "U0ADA"): "ada", ("channel", "C0GENERAL"): "#general"}

    def lookup(kind: str, item: str) -> str | None:
        return names.get((kind, item))

    [message] = envelope_to_outcome(load_payload("slack", "channel_message"), BOT, lookup).messages
    [dm] = envelope_to_outcome(load_payload("slack", "im_message"), BOT, lookup).messages
    [unknown] = envelope_to_outcome(load_payload("slack", "mpim_message"), BOT, lambda *_: None).messages

    assert (message.sender_name, message.chat_name) == ("ada", "#general")
    assert dm.chat_name == "ada"
    assert (unknown.sender_name, unknown.chat_name) == (None, None)


def test_other_request_types_and_events_are_ignored() -> None:
    assert envelope_to_outcome({"type": "app_rate_limited", "minute_rate_limited": 1}, BOT).ignored
    reaction = {"type": "event_callback", "event_id": "Ev1", "event": {"type": "reaction_added", "user": "U0ADA"}}
    assert envelope_to_outcome(reaction, BOT).ignored


@pytest.mark.parametrize("body", [b"", b"nope", b"[1]", b'{"event": {}}', b"\xff"])
def test_junk_bodies_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse_event_body(body)


def test_url_verification_without_challenge_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        envelope_to_outcome({"type": "url_verification"}, BOT)


def test_mrkdwn_escaping_round_trips() -> None:
    text = "a < b && c > d <@U1>"

    assert escape_text(text) == "a &lt; b &amp;&amp; c &gt; d &lt;@U1&gt;"
    assert unescape_text(escape_text(text)) == text


def test_display_names_from_users_info_and_conversations_info() -> None:
    assert user_display_name({"name": "ada", "real_name": "Ada L", "profile": {"display_name": ""}}) == "Ada L"
    assert user_display_name({"name": "ada"}) == "ada"
    assert channel_display_name({"name": "general", "is_channel": True}) == "#general"
    assert channel_display_name({"is_im": True, "user": "U0ADA"}) is None
