"""Edits, deletions and reactions from each platform's recorded payloads, as one normalized shape:
`event_type`, `target_external_id` naming the message concerned, and `reaction` {emoji, removed}."""

from __future__ import annotations

from typing import Any

import pytest

from chatbox.domain.normalized import InboundMessage, Reaction
from connectors.discord.translate import dispatch_to_inbound
from connectors.signal.translate import translate_receive
from connectors.slack.translate import SlackIdentity, envelope_to_outcome
from connectors.telegram.translate import ALLOWED_UPDATES, update_to_outcome
from tests.support.payloads import load_payload

SLACK_BOT = SlackIdentity(bot_user_id="U0BOT", bot_id="B0BOT")


def _slack(name: str, **event: Any) -> InboundMessage | None:
    envelope = load_payload("slack", name)
    envelope["event"] = {**envelope["event"], **event}
    messages = envelope_to_outcome(envelope, SLACK_BOT).messages
    return messages[0] if messages else None


def test_telegram_edit_names_the_edited_message() -> None:
    [edit] = update_to_outcome(load_payload("telegram", "edited_message")).messages

    assert edit.event_type == "edit"
    assert edit.target_external_id == "5512345678:41"


def test_telegram_reaction_is_a_reaction_event_on_the_message() -> None:
    [reaction] = update_to_outcome(load_payload("telegram", "message_reaction")).messages

    assert reaction.event_type == "reaction"
    assert reaction.target_external_id == "-1001234567890:500"
    assert reaction.reaction == Reaction(emoji="👍", removed=False)
    assert reaction.sender_name == "Ada Lovelace"
    assert reaction.external_message_id == "-1001234567890:500:reaction:824061020"


def test_telegram_reaction_taken_back_is_a_removal() -> None:
    update = load_payload("telegram", "message_reaction")
    change = update["message_reaction"]
    change["old_reaction"], change["new_reaction"] = change["new_reaction"], []

    [reaction] = update_to_outcome(update).messages

    assert reaction.reaction == Reaction(emoji="👍", removed=True)
    assert reaction.text == "removed 👍"


def test_a_bots_reaction_on_telegram_is_not_an_event() -> None:
    update = load_payload("telegram", "message_reaction")
    update["message_reaction"]["user"]["is_bot"] = True

    outcome = update_to_outcome(update)

    assert outcome.messages == () and outcome.ignored


def test_telegram_is_asked_for_reactions() -> None:
    assert "message_reaction" in ALLOWED_UPDATES


def test_slack_message_changed_is_an_edit_of_the_original() -> None:
    edit = _slack("message_changed")

    assert edit is not None
    assert edit.event_type == "edit"
    assert edit.text == "deploy build 413"
    assert edit.target_external_id == "C0GENERAL:1764170418.123456"
    assert edit.sender_id == "U0ADA"


def test_slack_edits_by_the_bot_and_unfurls_are_not_events() -> None:
    envelope = load_payload("slack", "message_changed")
    own = {**envelope["event"]["message"], "user": "U0BOT"}
    unfurl = {**envelope["event"]["message"], "text": "deploy build 412"}

    assert _slack("message_changed", message=own) is None
    assert _slack("message_changed", message=unfurl) is None


def test_slack_message_deleted_is_a_delete_of_the_original() -> None:
    deletion = _slack("message_deleted")

    assert deletion is not None
    assert deletion.event_type == "delete"
    assert deletion.target_external_id == "C0GENERAL:1764170418.123456"
    assert deletion.text is None


@pytest.mark.parametrize(("payload", "removed"), [("reaction_added", False), ("reaction_removed", True)])
def test_slack_reactions_name_the_emoji_and_the_message(payload: str, removed: bool) -> None:
    reaction = _slack(payload)

    assert reaction is not None
    assert reaction.event_type == "reaction"
    assert reaction.reaction == Reaction(emoji=":thumbsup:", removed=removed)
    assert reaction.target_external_id == "C0GENERAL:1764170001.000100"
    assert reaction.sender_id == "U0ADA"


def test_slack_reactions_by_the_bot_are_not_events() -> None:
    assert _slack("reaction_added", user="U0BOT") is None


def test_signal_edit_reaction_and_remote_delete_name_their_target() -> None:
    edit = InboundMessage.model_validate(translate_receive(load_payload("signal", "edit")))
    reaction = InboundMessage.model_validate(translate_receive(load_payload("signal", "reaction")))
    deletion = InboundMessage.model_validate(translate_receive(load_payload("signal", "remote_delete")))

    assert (edit.event_type, edit.target_external_id) == ("edit", "+4915112345678:1764170418123")
    assert (reaction.event_type, reaction.target_external_id) == ("reaction", "+4915100000001:1764170419456")
    assert reaction.reaction == Reaction(emoji="❤️", removed=False)
    assert (deletion.event_type, deletion.target_external_id) == ("delete", "+4915112345678:1764170418123")


@pytest.mark.parametrize(
    ("event", "payload", "event_type"),
    [
        ("MESSAGE_UPDATE", "message_edit", "edit"),
        ("MESSAGE_DELETE", "message_delete", "delete"),
        ("MESSAGE_REACTION_ADD", "reaction_add", "reaction"),
        ("MESSAGE_REACTION_REMOVE", "reaction_remove", "reaction"),
    ],
)
def test_discord_events_name_their_target(event: str, payload: str, event_type: str) -> None:
    data = load_payload("discord", payload)
    raw = dispatch_to_inbound(event, data.get("d", data), bot_user_id="1100000000000000001")
    assert raw is not None

    inbound = InboundMessage.model_validate(raw)

    assert inbound.event_type == event_type
    data = data.get("d", data)
    assert inbound.target_external_id == (data["message_id"] if "message_id" in data else data["id"])
    if event_type == "reaction":
        assert inbound.reaction is not None
        assert inbound.reaction.removed is (event == "MESSAGE_REACTION_REMOVE")


def test_a_program_written_before_the_new_fields_is_read_the_same_way() -> None:
    old_style = InboundMessage.model_validate(
        {
            "external_chat_id": "c",
            "external_message_id": "m:reaction",
            "text": "removed 🎉",
            "reply_to_external_id": "m",
            "event_type": "reaction",
        }
    )
    deletion = InboundMessage.model_validate(
        {
            "external_chat_id": "c",
            "external_message_id": "m:delete",
            "reply_to_external_id": "m",
            "event_type": "delete",
        }
    )

    assert old_style.target_external_id == "m"
    assert old_style.reaction == Reaction(emoji="🎉", removed=True)
    assert deletion.target_external_id == "m"


def test_an_edit_without_text_and_a_message_without_content_are_refused() -> None:
    with pytest.raises(ValueError, match="text or at least one attachment"):
        InboundMessage.model_validate(
            {"external_chat_id": "c", "external_message_id": "e", "event_type": "edit", "target_external_id": "m"}
        )
    with pytest.raises(ValueError, match="text or at least one attachment"):
        InboundMessage.model_validate({"external_chat_id": "c", "external_message_id": "m", "target_external_id": "x"})
