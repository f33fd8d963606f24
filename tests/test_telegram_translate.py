"""Telegram updates → normalized messages: pure translation on recorded payloads (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.normalized import ChatType
from chatbox.domain.untrusted import MAX_TEXT
from chatbox.ports.ingest import IngestOutcome
from connectors.telegram.translate import body_to_outcome, parse_update_body, reply_message_id, update_to_outcome
from tests.support.payloads import PAYLOADS, load_payload


def test_private_text_message_becomes_a_direct_chat_message() -> None:
    outcome = update_to_outcome(load_payload("telegram", "private_text"))

    assert outcome.delivery_key == "update:824061001"
    [message] = outcome.messages
    assert message.external_chat_id == "5512345678"
    assert message.external_message_id == "5512345678:41"
    assert message.text == "Can you check the build?"
    assert message.chat_type is ChatType.direct
    assert message.chat_name == "Ada Lovelace"
    assert message.sender_id == "5512345678"
    assert message.sender_name == "Ada Lovelace"
    assert message.sent_at == datetime.fromtimestamp(1764170418, UTC)
    assert message.event_type == "message"
    assert message.reply_to_external_id is None


def test_supergroup_reply_keeps_the_replied_message_and_the_negative_64_bit_chat_id() -> None:
    [message] = update_to_outcome(load_payload("telegram", "supergroup_reply")).messages

    assert message.external_chat_id == "-1002233445566"
    assert message.external_message_id == "-1002233445566:1207"
    assert message.reply_to_external_id == "-1002233445566:1199"
    assert message.chat_type is ChatType.group
    assert message.chat_name == "Release crew"
    assert message.sender_name == "Ada"


def test_basic_group_is_a_group_chat() -> None:
    [message] = update_to_outcome(load_payload("telegram", "group_text")).messages

    assert message.chat_type is ChatType.group
    assert message.chat_name == "Ops"
    assert message.text == "/status@chatbox_test_bot"


def test_channel_post_is_a_channel_message_sent_by_the_channel() -> None:
    [message] = update_to_outcome(load_payload("telegram", "channel_post")).messages

    assert message.chat_type is ChatType.channel
    assert message.external_message_id == "-1009876543210:310"
    assert message.sender_id == "-1009876543210"
    assert message.sender_name == "Release notes"
    assert message.text == "v2.4 is out"


def test_photo_keeps_its_caption_and_the_largest_size_by_file_id() -> None:
    [message] = update_to_outcome(load_payload("telegram", "photo_caption")).messages

    assert message.text == "the error screen"
    [photo] = message.attachments
    assert (photo.kind, photo.file_id, photo.size, photo.url) == ("image", "AgACAgIAAxkBAAIBK2dP_large", 84211, None)


@pytest.mark.parametrize(
    ("payload", "kind", "file_id", "mime_type", "name"),
    [
        ("document", "document", "BQACAgIAAxkBAAIBLGdP_doc", "text/plain", "build.log"),
        ("voice", "voice", "AwACAgIAAxkBAAIBLWdP_voice", "audio/ogg", None),
        ("sticker", "sticker", "CAACAgIAAxkBAAIBLmdP_sticker", None, "👍"),
    ],
)
def test_media_without_text_becomes_an_attachment(
    payload: str, kind: str, file_id: str, mime_type: str | None, name: str | None
) -> None:
    [message] = update_to_outcome(load_payload("telegram", payload)).messages

    assert message.text is None
    [attachment] = message.attachments
    assert (attachment.kind, attachment.file_id, attachment.mime_type, attachment.name) == (
        kind,
        file_id,
        mime_type,
        name,
    )


def test_edited_message_is_an_edit_event_distinct_from_the_original() -> None:
    [original] = update_to_outcome(load_payload("telegram", "private_text")).messages
    [edit] = update_to_outcome(load_payload("telegram", "edited_message")).messages

    assert edit.event_type == "edit"
    assert edit.external_message_id == "5512345678:41:edit:824061009"
    assert edit.external_message_id != original.external_message_id
    assert edit.text == "Can you check the nightly build?"
    assert edit.sent_at == datetime.fromtimestamp(1764170460, UTC)


def test_two_edits_of_one_message_are_two_events_and_a_redelivered_edit_is_the_same() -> None:
    first = load_payload("telegram", "edited_message")
    second = {**first, "update_id": first["update_id"] + 1}

    [a] = update_to_outcome(first).messages
    [again] = update_to_outcome(first).messages
    [b] = update_to_outcome(second).messages

    assert a.external_message_id == again.external_message_id
    assert a.external_message_id != b.external_message_id


@pytest.mark.parametrize("payload", ["new_chat_members", "callback_query"])
def test_updates_without_content_are_ignored_but_keep_their_delivery_key(payload: str) -> None:
    data = load_payload("telegram", payload)

    outcome = update_to_outcome(data)

    assert outcome.messages == ()
    assert outcome.ignored
    assert outcome.delivery_key == f"update:{data['update_id']}"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"message": {}}', b'{"update_id": "12"}', b'{"update_id": true}', b"\xff\xfe"],
)
def test_junk_bodies_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse_update_body(body)


def test_a_malformed_message_inside_an_update_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        update_to_outcome({"update_id": 5, "message": {"message_id": 1}})


@pytest.mark.parametrize(
    ("reference", "expected"),
    [("-100123:42", 42), ("42", 42), ("5512345678:41:edit:824061009", 41), ("abc", None), ("c:x", None)],
)
def test_reply_references_name_the_telegram_message_id(reference: str, expected: int | None) -> None:
    assert reply_message_id(reference) == expected


def test_fields_chatbox_does_not_read_never_refuse_an_update() -> None:
    data = load_payload("telegram", "private_text")
    data["message"] = {**data["message"], "entities": "not a list", "future_field": {"any": ["shape"]}}
    data["business_connection"] = 7

    [message] = update_to_outcome(data).messages

    assert message.text == "Can you check the build?"


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 6},
        {"update_id": 7, "message_reaction": {"chat": {"id": 1, "type": "private"}, "new_reaction": []}},
        {"update_id": 8, "message": None},
    ],
    ids=["bare-update-id", "unknown-kind", "null-message"],
)
def test_partial_and_unknown_updates_are_ignored(update: dict[str, object]) -> None:
    outcome = update_to_outcome(update)

    assert outcome.messages == ()
    assert outcome.ignored
    assert outcome.delivery_key == f"update:{update['update_id']}"


def test_a_date_out_of_range_is_invalid_input() -> None:
    data = load_payload("telegram", "private_text")
    data["message"] = {**data["message"], "date": 10**20}

    with pytest.raises(InvalidInputError):
        update_to_outcome(data)


@pytest.mark.parametrize(
    "change",
    [{"date": -86_400}, {"date": 253_380_000_000}, {"text": "x" * (MAX_TEXT + 1)}],
    ids=["before-1970", "year-9999", "text-too-long"],
)
def test_a_message_beyond_inbound_bounds_is_ignored_not_stored(change: dict[str, object]) -> None:
    data = load_payload("telegram", "private_text")
    data["message"] = {**data["message"], **change}

    outcome = update_to_outcome(data)

    assert outcome.messages == ()
    assert outcome.ignored == "a message chatbox cannot represent"


def _two_pass(body: bytes) -> IngestOutcome | str:
    try:
        return update_to_outcome(parse_update_body(body))
    except InvalidInputError as exc:
        return exc.message


def _one_pass(body: bytes) -> IngestOutcome | str:
    try:
        return body_to_outcome(body)
    except InvalidInputError as exc:
        return exc.message


_TEXT_UPDATE = (
    '{"update_id": 7, "message": {"message_id": 3, "date": 1764170418, "chat": {"id": 55, "type": "private", '
    '"first_name": "Ada"}, "from": {"id": 55, "is_bot": false, "first_name": "Ada"}, "text": "%s"}%s}'
)
_AWKWARD_BODIES = {
    "nul-escape-removed": (_TEXT_UPDATE % ("a\\u0000b", "")).encode(),
    "nan-in-an-unknown-field": (_TEXT_UPDATE % ("hi", ', "x": NaN')).encode(),
    "infinity-in-an-unknown-field": (_TEXT_UPDATE % ("hi", ', "x": -Infinity')).encode(),
    "nested-past-the-limit": (_TEXT_UPDATE % ("hi", ', "x": ' + "[" * 70 + "]" * 70)).encode(),
    "nested-within-the-limit": (_TEXT_UPDATE % ("hi", ', "x": ' + "[" * 40 + "]" * 40)).encode(),
    "lone-surrogate": (_TEXT_UPDATE % ("\\ud800", "")).encode(),
    "update-id-as-text": b'{"update_id": "12"}',
    "update-id-true": b'{"update_id": true}',
    "update-id-float": b'{"update_id": 12.0}',
    "date-as-text": (_TEXT_UPDATE % ("hi", "")).replace("1764170418", '"1764170418"').encode(),
    "duplicate-keys": b'{"update_id": 1, "update_id": 2}',
    "not-utf8": b'{"update_id": 1, "x": "\xff"}',
    "trailing-garbage": b'{"update_id": 1} x',
    "array": b"[]",
    "empty": b"",
    "huge-date": (_TEXT_UPDATE % ("hi", "")).replace("1764170418", "99999999999999999999").encode(),
    "text-saying-nan": (_TEXT_UPDATE % ("NaN and Infinity", "")).encode(),
}


@pytest.mark.parametrize("name", sorted(_AWKWARD_BODIES))
def test_an_update_parsed_in_one_pass_is_answered_as_in_two(name: str) -> None:
    body = _AWKWARD_BODIES[name]

    assert _one_pass(body) == _two_pass(body)


@pytest.mark.parametrize(
    "payload",
    sorted(path.stem for path in (PAYLOADS / "telegram").glob("*.json")),
)
def test_each_recorded_update_is_answered_in_one_pass_as_in_two(payload: str) -> None:
    body = json.dumps(load_payload("telegram", payload)).encode()

    assert _one_pass(body) == _two_pass(body)
