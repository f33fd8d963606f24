"""Idempotent sends and honest outcomes through the sending service, with the real Telegram and Slack connectors
against their stand-ins on 127.0.0.1 (both database backends): a retried key posts once, a response lost after
the platform posted is resolved (Slack history) or reported as unknown (Telegram, which has no lookup), a split
send failing on part 2 is finished by a retry, and a crash between the platform's answer and the commit is
reconciled rather than re-sent."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.errors import InvalidInputError, RateLimitedError, UnknownOutcomeError
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services import focus, sending
from chatbox.services.sending import SendReceipt
from chatbox.store.models import Message, OutboundSend
from chatbox.store.types import utcnow
from connectors import builtin_platforms
from connectors.slack.spec import SlackSettings
from connectors.telegram.spec import TelegramSettings
from tests.conftest import AccountKey
from tests.support.api import create_mailbox
from tests.support.mcp import mcp_client, run_async, serving, text_of
from tests.support.pipeline import accept_directly
from tests.support.platforms import (
    TELEGRAM_BOT,
    Answer,
    SlackWebApi,
    TelegramBotApi,
    running_slack,
    running_telegram,
    telegram_rate_limit,
)

Json = dict[str, Any]
TELEGRAM_TOKEN = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SLACK_TOKEN = "xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx"
SLACK_SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
TELEGRAM_CHAT = "telegram:4242"
SLACK_CHAT = "slack:C0GENERAL"


@pytest.fixture
def telegram_api() -> Iterator[TelegramBotApi]:
    with running_telegram({TELEGRAM_TOKEN: TELEGRAM_BOT}) as api:
        yield api


@pytest.fixture
def slack_api() -> Iterator[SlackWebApi]:
    with running_slack(SLACK_TOKEN) as api:
        yield api


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", db_url=db_url, vault_key=generate_key(), public_url="https://chatbox.example.test"
    )


@pytest.fixture
def runtime(settings: Settings, telegram_api: TelegramBotApi, slack_api: SlackWebApi) -> Iterator[Runtime]:
    built = build_runtime(
        settings,
        platforms=builtin_platforms(),
        platform_settings={
            "telegram": TelegramSettings(api_url=telegram_api.root),
            "slack": SlackSettings(api_url=slack_api.root + "/api/"),
        },
    )
    try:
        yield built
    finally:
        built.close()


def _mailbox(client: TestClient, account: AccountKey, runtime: Runtime, platform: str) -> Json:
    """A mailbox with a `platform` connection and one inbound message in its chat (so the chat exists)."""
    mailbox = create_mailbox(client, account)
    secrets = {"bot_token": TELEGRAM_TOKEN} if platform == "telegram" else {"bot_token": SLACK_TOKEN}
    if platform == "slack":
        secrets["signing_secret"] = SLACK_SIGNING
    response = client.post(
        f"/v1/mailboxes/{mailbox['id']}/connections",
        json={"platform": platform, "secrets": secrets},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    chat = "4242" if platform == "telegram" else "C0GENERAL"
    accept_directly(runtime, response.json(), "in-1", external_chat_id=chat)
    return mailbox


def _send(runtime: Runtime, mailbox_id: str, text: str, chat: str, **kwargs: Any) -> SendReceipt:
    with runtime.db.session() as db:
        return sending.send_message(db, runtime.vault, runtime.platforms, mailbox_id, text, chat=chat, **kwargs)


def _record(runtime: Runtime, key: str) -> OutboundSend:
    with runtime.db.session() as db:
        record = db.scalars(select(OutboundSend).where(OutboundSend.idempotency_key == key)).one()
        db.expunge(record)
        return record


def _rewrite(runtime: Runtime, key: str, **values: Any) -> None:
    with runtime.db.session() as db:
        record = db.scalars(select(OutboundSend).where(OutboundSend.idempotency_key == key)).one()
        for name, value in values.items():
            setattr(record, name, value)
        db.commit()


def _outbound_texts(runtime: Runtime, mailbox_id: str, chat: str) -> list[str]:
    """What the agent's history (read_chat) shows as said by it."""
    with runtime.db.session() as db:
        page = focus.read_chat(db, mailbox_id, chat)
    return [m.text for m in page.messages if m.direction == "out"]


def _two_part_text() -> str:
    return "A" * 4000 + "\n\n" + "B" * 100  # Telegram: two messages (4096 UTF-16 units each at most)


# --- a retried key ----------------------------------------------------------------------------------------------


def test_a_retried_key_answers_the_first_result_and_posts_once(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]

    first = _send(runtime, mailbox_id, "On my way.", TELEGRAM_CHAT, idempotency_key="k-1")
    again = _send(runtime, mailbox_id, "On my way.", TELEGRAM_CHAT, idempotency_key="k-1")

    assert telegram_api.sent_texts() == ["On my way."]
    assert (again.message_id, again.external_id) == (first.message_id, first.external_id)
    assert again.replayed and not first.replayed
    assert _outbound_texts(runtime, mailbox_id, TELEGRAM_CHAT) == ["On my way."]


def test_the_same_key_with_other_arguments_is_an_error_naming_the_key_and_calls_no_platform(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    _send(runtime, mailbox_id, "On my way.", TELEGRAM_CHAT, idempotency_key="k-2")

    with pytest.raises(InvalidInputError, match="idempotency_key 'k-2' was already used"):
        _send(runtime, mailbox_id, "Running late.", TELEGRAM_CHAT, idempotency_key="k-2")
    with pytest.raises(InvalidInputError, match="k-2"):
        _send(runtime, mailbox_id, "On my way.", TELEGRAM_CHAT, idempotency_key="k-2", reply_to="4242:1")

    assert telegram_api.sent_texts() == ["On my way."]


def test_a_key_reused_after_24_hours_is_a_new_send(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    first = _send(runtime, mailbox_id, "Good morning.", TELEGRAM_CHAT, idempotency_key="daily")
    _rewrite(runtime, "daily", created_at=utcnow() - timedelta(hours=24, minutes=1))

    second = _send(runtime, mailbox_id, "Good morning.", TELEGRAM_CHAT, idempotency_key="daily")

    assert telegram_api.sent_texts() == ["Good morning.", "Good morning."]
    assert second.external_id != first.external_id and not second.replayed


def test_a_key_longer_than_255_characters_is_refused_before_any_platform_call(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]

    with pytest.raises(InvalidInputError, match="idempotency_key must be 1 to 255"):
        _send(runtime, mailbox_id, "hi", TELEGRAM_CHAT, idempotency_key="k" * 256)

    assert telegram_api.sent_texts() == []


# --- honest outcomes ----------------------------------------------------------------------------------------


def test_telegram_a_lost_answer_is_an_unknown_outcome_and_a_retry_never_posts_again(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    telegram_api.drop_responses["sendMessage"] = [True]  # Telegram posts it; its answer never arrives

    with pytest.raises(UnknownOutcomeError, match="no way to look a sent message up"):
        _send(runtime, mailbox_id, "Deploying now.", TELEGRAM_CHAT, idempotency_key="k-3")
    with pytest.raises(UnknownOutcomeError, match="check the chat before resending"):
        _send(runtime, mailbox_id, "Deploying now.", TELEGRAM_CHAT, idempotency_key="k-3")

    assert telegram_api.sent_texts() == ["Deploying now."]
    assert _record(runtime, "k-3").status == "unknown"
    assert _outbound_texts(runtime, mailbox_id, TELEGRAM_CHAT) == []  # not shown as said: it is not known to be


def test_telegram_a_refused_connection_is_unavailable_not_unknown(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    telegram_api.server.shutdown()
    telegram_api.server.server_close()  # the port now refuses connections: the request never left

    with pytest.raises(Exception, match="cannot be reached") as raised:
        _send(runtime, mailbox_id, "hello", TELEGRAM_CHAT, idempotency_key="k-4")

    assert not isinstance(raised.value, UnknownOutcomeError)
    assert _record(runtime, "k-4").status == "failed"


def test_slack_a_lost_answer_is_found_in_the_channel_history_and_nothing_is_posted_twice(
    client: TestClient, account: AccountKey, runtime: Runtime, slack_api: SlackWebApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "slack")["id"]
    slack_api.drop_responses["chat.postMessage"] = [True]

    sent = _send(runtime, mailbox_id, "Deploying <now> & then", SLACK_CHAT, idempotency_key="k-5")

    [posted] = slack_api.posted["C0GENERAL"]
    assert sent.external_id == f"C0GENERAL:{posted['ts']}"
    assert len(slack_api.calls_of("chat.postMessage")) == 1
    [lookup] = slack_api.calls_of("conversations.history")
    assert lookup.params["channel"] == "C0GENERAL" and float(lookup.params["oldest"]) <= float(posted["ts"])
    again = _send(runtime, mailbox_id, "Deploying <now> & then", SLACK_CHAT, idempotency_key="k-5")
    assert again.external_id == sent.external_id and len(slack_api.calls_of("chat.postMessage")) == 1
    assert _outbound_texts(runtime, mailbox_id, SLACK_CHAT) == ["Deploying <now> & then"]


def test_slack_a_lost_answer_for_a_post_slack_did_not_make_is_unknown_then_posted_on_retry(
    client: TestClient, account: AccountKey, runtime: Runtime, slack_api: SlackWebApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "slack")["id"]
    # The post fails on Slack's side (nothing posted) and its answer is lost: the history then shows nothing.
    slack_api.script["chat.postMessage"] = [Answer(200, {"ok": False, "error": "internal_error"})]
    slack_api.drop_responses["chat.postMessage"] = [True]

    with pytest.raises(UnknownOutcomeError, match="history shows no such message"):
        _send(runtime, mailbox_id, "hello", SLACK_CHAT, idempotency_key="k-6")
    sent = _send(runtime, mailbox_id, "hello", SLACK_CHAT, idempotency_key="k-6")

    assert [m["text"] for m in slack_api.posted["C0GENERAL"]] == ["hello"]
    assert len(slack_api.calls_of("conversations.history")) == 2  # after the lost answer, and before the retry
    assert sent.external_id == f"C0GENERAL:{slack_api.posted['C0GENERAL'][0]['ts']}"


# --- split sends ------------------------------------------------------------------------------------------------


def test_a_split_send_failing_on_part_2_says_which_parts_went_out_and_a_retry_sends_only_the_rest(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    text = _two_part_text()
    telegram_api.script["sendMessage"] = [None, telegram_rate_limit(60)]  # type: ignore[list-item]  # None: as usual

    with pytest.raises(RateLimitedError, match=r"1 of 2 parts went out, ids 4242:\d+; part 2 did not") as raised:
        _send(runtime, mailbox_id, text, TELEGRAM_CHAT, idempotency_key="k-7")
    assert len(raised.value.parts_sent) == 1
    assert _outbound_texts(runtime, mailbox_id, TELEGRAM_CHAT) == []  # not all of it was said yet

    sent = _send(runtime, mailbox_id, text, TELEGRAM_CHAT, idempotency_key="k-7")

    assert telegram_api.sent_texts() == ["A" * 4000, "B" * 100, "B" * 100]  # part 1 once, part 2 refused then sent
    assert sent.part_ids[0] == raised.value.parts_sent[0] and len(sent.part_ids) == 2
    assert sent.external_id == sent.part_ids[0]
    assert _outbound_texts(runtime, mailbox_id, TELEGRAM_CHAT) == [text]
    assert _record(runtime, "k-7").parts_sent == list(sent.part_ids)


def test_a_split_send_whose_part_2_answer_is_lost_keeps_part_1_and_stays_unknown_on_telegram(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    telegram_api.drop_responses["sendMessage"] = [False, True]  # part 1 answered; part 2 posted, its answer lost

    with pytest.raises(UnknownOutcomeError, match="1 of 2 parts went out") as raised:
        _send(runtime, mailbox_id, _two_part_text(), TELEGRAM_CHAT, idempotency_key="k-8")
    with pytest.raises(UnknownOutcomeError, match="whether part 2 reached chat 4242 is unknown"):
        _send(runtime, mailbox_id, _two_part_text(), TELEGRAM_CHAT, idempotency_key="k-8")

    record = _record(runtime, "k-8")
    assert record.status == "unknown" and record.parts_sent == list(raised.value.parts_sent)
    assert record.parts_total == 2 and len(record.parts_sent) == 1
    assert len(telegram_api.sent_texts()) == 2  # never a third post


# --- a crash between the platform's answer and the commit --------------------------------------------------------


def test_a_send_left_sending_by_a_crash_is_reconciled_from_slack_history_not_re_sent(
    client: TestClient, account: AccountKey, runtime: Runtime, slack_api: SlackWebApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "slack")["id"]
    posted = _send(runtime, mailbox_id, "Shipped.", SLACK_CHAT, idempotency_key="k-9")
    # As if the process died after Slack posted and before chatbox committed: the record still `sending`,
    # its attempt long begun, no outbound message stored.
    with runtime.db.session() as db:
        db.execute(delete(Message).where(Message.id == posted.message_id))
        db.commit()
    _rewrite(
        runtime,
        "k-9",
        status="sending",
        message_id=None,
        parts_sent=[],
        attempt_started_at=utcnow() - sending.SENDING_LEASE - timedelta(seconds=5),
    )

    again = _send(runtime, mailbox_id, "Shipped.", SLACK_CHAT, idempotency_key="k-9")

    assert again.external_id == posted.external_id
    assert len(slack_api.calls_of("chat.postMessage")) == 1
    assert _outbound_texts(runtime, mailbox_id, SLACK_CHAT) == ["Shipped."]


def test_a_send_still_in_flight_is_waited_for_then_an_honest_still_in_flight_error(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]
    _send(runtime, mailbox_id, "hello", TELEGRAM_CHAT, idempotency_key="k-10")
    _rewrite(runtime, "k-10", status="sending", attempt_started_at=utcnow())  # another call is sending it

    with pytest.raises(UnknownOutcomeError, match="still in flight"):
        _send(runtime, mailbox_id, "hello", TELEGRAM_CHAT, idempotency_key="k-10", in_flight_wait=0.3)

    assert telegram_api.sent_texts() == ["hello"]


def test_without_a_key_every_call_is_a_new_send(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]

    _send(runtime, mailbox_id, "ping", TELEGRAM_CHAT)
    _send(runtime, mailbox_id, "ping", TELEGRAM_CHAT)

    assert telegram_api.sent_texts() == ["ping", "ping"]
    with runtime.db.session() as db:
        assert [r.status for r in db.scalars(select(OutboundSend))] == ["sent", "sent"]


# --- through MCP ------------------------------------------------------------------------------------------------


def _call_tools(
    runtime: Runtime, mailbox: Json, calls: list[tuple[str, Json]]
) -> tuple[str, list[types.CallToolResult]]:
    """The server's instructions, and the answers to `calls` in order, over one MCP session."""
    with serving(create_app(runtime)) as base_url:

        async def go() -> tuple[str, list[types.CallToolResult]]:
            async with mcp_client(f"{base_url}/mcp/{mailbox['id']}", mailbox["mcp_token"]) as session:
                answers = [await session.call_tool(name, arguments) for name, arguments in calls]
                return str(session.instructions or ""), answers

        return run_async(go)


def test_mcp_send_tools_take_a_key_a_retry_posts_once_and_an_unknown_outcome_says_not_to_resend_blindly(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox = _mailbox(client, account, runtime, "telegram")
    telegram_api.drop_responses["sendMessage"] = [False, True]  # the second post's answer is lost
    send = {"chat_id": TELEGRAM_CHAT, "text": "Shipping now.", "idempotency_key": "mcp-1"}
    lost = {"chat_id": "4242", "text": "Rolling back.", "idempotency_key": "mcp-2"}

    instructions, results = _call_tools(
        runtime,
        mailbox,
        [
            ("send_message", send),
            ("telegram_send", {**send, "chat_id": "4242"}),  # the same message through the platform tool
            ("telegram_send", {**send, "disable_notification": True}),  # not the same message
            ("telegram_send", lost),
        ],
    )

    first, retry, other, unknown = results
    assert not first.is_error and not retry.is_error, text_of(first) + text_of(retry)
    assert "already sent, so nothing new was posted" in text_of(retry)
    assert retry.structured_content is not None and retry.structured_content["already_sent"] is True
    assert first.structured_content is not None
    assert retry.structured_content["message_id"] == first.structured_content["message_id"]
    assert other.is_error and "idempotency_key 'mcp-1' was already used" in text_of(other)
    assert unknown.is_error and "[unknown_outcome]" in text_of(unknown)
    assert "same idempotency_key is safe" in text_of(unknown)
    assert telegram_api.sent_texts() == ["Shipping now.", "Rolling back."]
    assert "idempotency_key" in instructions and "unknown_outcome" in instructions


def test_concurrent_calls_with_one_key_post_once_and_all_answer_the_same_message(
    client: TestClient, account: AccountKey, runtime: Runtime, telegram_api: TelegramBotApi
) -> None:
    mailbox_id = _mailbox(client, account, runtime, "telegram")["id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        receipts = list(
            pool.map(lambda _: _send(runtime, mailbox_id, "Once.", TELEGRAM_CHAT, idempotency_key="k-11"), range(4))
        )

    assert telegram_api.sent_texts() == ["Once."]
    assert len({r.message_id for r in receipts}) == 1
    assert sum(not r.replayed for r in receipts) == 1
