"""signal-cli envelopes (recorded shapes, tests/payloads/signal/) → normalized messages chatbox accepts."""

from __future__ import annotations

from typing import Any

import pytest

from chatbox.domain.normalized import InboundMessage
from connectors.relay.server import SendRefused, SendRequest
from connectors.signal.send import is_direct_chat, send_params
from connectors.signal.translate import parse_message_key, translate_receive
from tests.support.payloads import load_payload

ADA = "+4915112345678"
ACCOUNT = "+4915100000001"
GROUP = "Pmpi+EfPWmsxiomLe9Nx2XF9HOE483p6iKiFj65iMwI="


def translated(name: str) -> dict[str, Any]:
    message = translate_receive(load_payload("signal", name))
    assert message is not None
    InboundMessage.model_validate(message)  # chatbox would accept it
    return message


def test_direct_text_is_a_direct_chat_keyed_by_author_and_timestamp() -> None:
    message = translated("direct_text")
    assert message == {
        "external_chat_id": ADA,
        "external_message_id": f"{ADA}:1764170418123",
        "text": "hi, are you there?",
        "sender_id": ADA,
        "sender_name": "Ada",
        "chat_name": "Ada",
        "chat_type": "direct",
        "sent_at": "2025-11-26T15:20:18.123000Z",
        "attachments": [],
        "event_type": "message",
    }


def test_group_message_uses_the_group_id_and_writes_mentions_out() -> None:
    message = translated("group_text_with_mention")
    assert (message["external_chat_id"], message["chat_type"], message["chat_name"]) == (GROUP, "group", "Climbing")
    assert message["text"] == f"@{ACCOUNT} can you book the gym?"
    assert message["sender_id"] == "+4915187654321"


def test_a_quote_is_a_reply_to_the_quoted_message() -> None:
    assert translated("quote_reply")["reply_to_external_id"] == f"{ACCOUNT}:1764170419456"


def test_an_attachment_only_message_keeps_the_file_reference() -> None:
    message = translated("attachment_photo")
    assert "text" not in message
    assert message["attachments"] == [
        {"kind": "image", "file_id": "gK4bW2p1Qm9x0Zr7YtVn.jpg", "mime_type": "image/jpeg", "size": 183204}
    ]


@pytest.mark.parametrize(("name", "text"), [("reaction", "\u2764\ufe0f"), ("reaction_removed", "removed \u2764\ufe0f")])
def test_reactions_are_their_own_events_replying_to_the_reacted_message(name: str, text: str) -> None:
    message = translated(name)
    assert message["event_type"] == "reaction"
    assert message["text"] == text
    assert message["reply_to_external_id"] == f"{ACCOUNT}:1764170419456"
    assert message["external_message_id"] != message["reply_to_external_id"]


def test_an_edit_is_an_edit_event_of_the_original_message() -> None:
    message = translated("edit")
    assert message["event_type"] == "edit"
    assert message["external_message_id"] == f"{ADA}:1764170460000"
    assert message["reply_to_external_id"] == f"{ADA}:1764170418123"


def test_a_sender_without_a_number_is_known_by_uuid() -> None:
    message = translated("uuid_only_sender")
    assert message["external_chat_id"] == "5e6f7a8b-1c2d-4e3f-9a0b-1c2d3e4f5a6b"
    assert is_direct_chat(message["external_chat_id"])


@pytest.mark.parametrize("name", ["sync_sent_from_linked_device", "receipt", "typing", "group_update"])
def test_own_messages_receipts_typing_and_group_updates_are_not_delivered(name: str) -> None:
    assert translate_receive(load_payload("signal", name)) is None


@pytest.mark.parametrize(
    "params",
    [
        None,
        [],
        {},
        {"envelope": "x"},
        {"envelope": {"sourceNumber": ADA}},
        {"envelope": {"sourceNumber": ADA, "timestamp": True, "dataMessage": {"message": "x"}}},
    ],
    ids=["none", "list", "empty", "string-envelope", "no-data", "bool-timestamp"],
)
def test_junk_is_ignored_not_raised(params: Any) -> None:
    assert translate_receive(params) is None


def test_the_subscription_form_is_read_too() -> None:
    wrapped = {"subscription": 0, "result": load_payload("signal", "direct_text")}
    assert translate_receive(wrapped) == translated("direct_text")


def _request(chat_id: str, reply_to: str | None = None) -> SendRequest:
    return SendRequest(
        request_id="r1", connection_id="c1", platform="signal", chat_id=chat_id, text="hi", reply_to=reply_to
    )


def test_send_params_address_a_person_or_a_group_and_quote_the_reply() -> None:
    assert send_params(_request(ADA)) == {"message": "hi", "recipient": [ADA]}
    assert send_params(_request(GROUP, f"{ADA}:1764170418123")) == {
        "message": "hi",
        "groupId": GROUP,
        "quoteTimestamp": 1764170418123,
        "quoteAuthor": ADA,
    }
    assert send_params(_request(ADA, "1764170418123"))["quoteAuthor"] == ADA
    assert parse_message_key("7ccae375-cd51-4c82-8b1e-7be3280aa485:17") == ("7ccae375-cd51-4c82-8b1e-7be3280aa485", 17)


@pytest.mark.parametrize(("chat", "reply_to"), [(ADA, "not-an-id"), (GROUP, "1764170418123"), (ADA, "x:１２")])
def test_an_unusable_reply_to_is_refused_with_422(chat: str, reply_to: str) -> None:
    with pytest.raises(SendRefused) as refused:
        send_params(_request(chat, reply_to))
    assert refused.value.status == 422
