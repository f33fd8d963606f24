"""Discord's gateway dispatches (recorded shapes in tests/payloads/discord/) as normalized inbound messages."""

from __future__ import annotations

from typing import Any

import pytest

from chatbox.domain.normalized import InboundMessage
from connectors.discord.translate import ChannelInfo, dispatch_to_inbound, mentions_user, snowflake_time
from tests.support.payloads import load_payload

BOT_ID = "1300000000000000001"
THREAD = "1312345678901234500"
CHANNEL = "1100000000000000020"


def channels(channel_id: str) -> ChannelInfo | None:
    known = {
        CHANNEL: ChannelInfo(name="general"),
        THREAD: ChannelInfo(name="release 2.4", is_thread=True, parent_name="general"),
    }
    return known.get(channel_id)


def translate(name: str, **changes: Any) -> dict[str, Any] | None:
    frame = load_payload("discord", name)
    return dispatch_to_inbound(frame["t"], {**frame["d"], **changes}, bot_user_id=BOT_ID, channels=channels)


def accepted(name: str) -> InboundMessage:
    """The translation, as chatbox's inbound route would read it (so the dict is one chatbox accepts)."""
    message = translate(name)
    assert message is not None
    return InboundMessage.model_validate(message)


def test_a_guild_message_mentioning_the_bot_names_it_readably() -> None:
    message = accepted("guild_mention")

    assert message.external_chat_id == CHANNEL
    assert message.external_message_id == "1312345678901234567"
    assert message.text == "@chatbox-agent can you summarise the release notes?"
    assert (message.sender_id, message.sender_name) == ("1200000000000000042", "Ada (ops)")
    assert (message.chat_name, message.chat_type) == ("#general", "channel")
    assert message.sent_at is not None and message.sent_at.isoformat() == "2026-11-30T15:20:18.512000+00:00"
    assert message.event_type == "message"
    assert mentions_user(load_payload("discord", "guild_mention")["d"], BOT_ID)


def test_a_direct_message_is_a_direct_chat_named_after_the_sender() -> None:
    message = accepted("dm_text")

    assert (message.external_chat_id, message.chat_type) == ("1290000000000000555", "direct")
    assert (message.sender_name, message.chat_name) == ("grace_h", "grace_h")
    assert message.text == "hey, are you around?"


def test_a_reply_in_a_thread_is_its_own_chat_named_after_its_parent() -> None:
    message = accepted("thread_reply")

    assert message.external_chat_id == THREAD
    assert message.chat_name == "#general › release 2.4"
    assert message.reply_to_external_id == "1312345678901234620"


def test_a_channel_the_cache_does_not_know_has_no_name() -> None:
    frame = load_payload("discord", "guild_mention")
    message = dispatch_to_inbound(frame["t"], frame["d"], bot_user_id=BOT_ID)

    assert message is not None and "chat_name" not in message


@pytest.mark.parametrize(
    ("name", "kind", "mime"),
    [("image_attachment", "image", "image/png"), ("voice_message", "voice", "audio/ogg"), ("sticker", "sticker", None)],
    ids=["image", "voice", "sticker"],
)
def test_files_arrive_as_attachments_with_their_cdn_url(name: str, kind: str, mime: str | None) -> None:
    message = accepted(name)

    [attachment] = message.attachments
    assert attachment.kind == kind
    assert attachment.mime_type == mime
    assert attachment.url is not None and attachment.url.startswith(("https://cdn.discordapp.com/", "https://media."))
    assert message.text is None


def test_an_edit_is_its_own_event_with_its_own_id() -> None:
    message = accepted("message_edit")

    assert message.external_message_id == "1312345678901234567:edit:2026-11-30T15:22:05.871000+00:00"
    assert message.event_type == "edit"
    assert message.text == "@chatbox-agent can you summarise the release notes for 2.4?"
    assert message.sent_at is not None and message.sent_at.isoformat() == "2026-11-30T15:22:05.871000+00:00"


def test_a_deletion_is_its_own_event_naming_the_deleted_message() -> None:
    message = accepted("message_delete")

    assert message.external_message_id == "1312345678901234650:delete"
    assert message.event_type == "delete"
    assert message.reply_to_external_id == "1312345678901234650"
    assert message.external_chat_id == THREAD
    assert message.chat_name == "#general › release 2.4"


@pytest.mark.parametrize(
    "name", ["own_message", "member_join", "embed_update"], ids=["own-message", "system-message", "embed-only-update"]
)
def test_events_that_are_nothing_for_the_agent_are_skipped(name: str) -> None:
    assert translate(name) is None


def test_another_bots_message_is_skipped() -> None:
    frame = load_payload("discord", "dm_text")
    author = {**frame["d"]["author"], "bot": True}

    assert translate("dm_text", author=author) is None


def test_nul_characters_are_removed_so_chatbox_keeps_the_message() -> None:
    message = translate("dm_text", content="he\x00llo")

    assert message is not None and message["text"] == "hello"
    InboundMessage.model_validate(message)


@pytest.mark.parametrize(
    "changes",
    [{"id": "not-a-snowflake"}, {"channel_id": None}, {"author": "someone"}, {"timestamp": "yesterday"}],
    ids=["bad-id", "no-channel", "bad-author", "bad-timestamp"],
)
def test_malformed_fields_never_raise(changes: dict[str, Any]) -> None:
    message = translate("dm_text", **changes)

    if message is not None:
        InboundMessage.model_validate(message)


def test_a_snowflake_tells_its_time() -> None:
    assert snowflake_time("175928847299117063") == "2016-04-30T11:18:25.796000Z"


def test_other_dispatches_are_ignored() -> None:
    assert dispatch_to_inbound("TYPING_START", {"channel_id": CHANNEL}, bot_user_id=BOT_ID) is None


def test_a_reaction_is_its_own_event_replying_to_the_message() -> None:
    message = accepted("reaction_add")

    assert message.event_type == "reaction"
    assert message.text == "👍"
    assert message.external_message_id == "1312345678901234800:reaction:1200000000000000042:👍"
    assert message.reply_to_external_id == "1312345678901234800"
    assert (message.sender_id, message.sender_name) == ("1200000000000000042", "Ada (ops)")


def test_a_removed_custom_reaction_names_the_emoji() -> None:
    message = accepted("reaction_remove")

    assert message.text == "removed :shipit:"
    assert message.external_message_id == "1312345678901234800:unreaction:1200000000000000042:1296000000000000123"


def test_the_bots_own_reaction_is_skipped() -> None:
    assert translate("reaction_add", user_id=BOT_ID) is None
