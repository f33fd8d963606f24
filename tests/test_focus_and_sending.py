"""The focus and sending services, and the container-connector HTTP client against a stand-in (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.domain.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorUnavailableError,
    InvalidInputError,
    NoFocusError,
    NotFoundError,
    PlatformRefusedError,
    RateLimitedError,
)
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.ports.platforms import PlatformRegistry
from chatbox.runtime import Runtime
from chatbox.services import focus, sending
from chatbox.services.sending import SendReceipt
from chatbox.store.models import Message
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_credential, create_mailbox
from tests.support.mcp import ConnectorReply, StandInConnector, running_connector
from tests.support.pipeline import accept_directly, post_inbound

CONNECTOR_TOKEN = "connector-token-0123456789abcdef"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
    )


@pytest.fixture
def connector() -> Iterator[StandInConnector]:
    with running_connector(CONNECTOR_TOKEN) as running:
        yield running


def _signal_mailbox(
    client: TestClient, account: AccountKey, connector: StandInConnector | None = None, token: str = CONNECTOR_TOKEN
) -> tuple[dict[str, Any], dict[str, Any]]:
    mailbox = create_mailbox(client, account)
    config: dict[str, Any] = {}
    if connector is not None:
        credential = create_credential(client, account, kind="mcp_proxy_auth", name="signal-out", value=token)
        config = {"outbound_url": connector.url, "outbound_credential_id": credential["id"]}
    connection = create_connection(client, account, mailbox["id"], platform="signal", config=config)
    return mailbox, connection


def _send(runtime: Runtime, mailbox_id: str, text: str = "hello", **kwargs: Any) -> SendReceipt:
    with runtime.db.session() as db:
        return sending.send_message(db, runtime.vault, runtime.platforms, mailbox_id, text, **kwargs)


def test_list_chats_shows_last_message_unread_and_most_recent_first(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1", "first chat", external_chat_id="alice", sender_name="Alice")
    post_inbound(client, connection, "m-2", "second chat", external_chat_id="bob", chat_name="Bob")
    post_inbound(client, connection, "m-3", "x" * 300, external_chat_id="bob")

    with runtime.db.session() as db:
        chats = focus.list_chats(db, mailbox["id"])

    assert [c.id for c in chats] == ["signal:bob", "signal:alice"]
    bob = chats[0]
    assert (bob.name, bob.type, bob.platform, bob.unread, bob.focal, bob.muted) == (
        "Bob",
        "direct",
        "signal",
        2,
        False,
        False,
    )
    assert bob.last_message_preview is not None and bob.last_message_preview.endswith("…")
    assert len(bob.last_message_preview) == focus.PREVIEW_CHARS
    assert bob.last_message_direction == "in" and bob.last_message_at is not None
    assert chats[1].last_message_preview == "first chat"


def test_list_chats_filters_platform(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1", "hi")

    with runtime.db.session() as db:
        assert focus.list_chats(db, mailbox["id"], platform="telegram") == []
        assert [c.id for c in focus.list_chats(db, mailbox["id"], platform="signal")] == ["signal:chat-1"]


def test_switch_chat_marks_read_and_recaps_both_directions(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    for n in range(3):
        post_inbound(client, connection, f"m-{n}", f"message {n}", sender_name="Ada")

    with runtime.db.session() as db:
        switched = focus.switch_chat(db, mailbox["id"], "signal:chat-1", recap=2)
    sent = _send(runtime, mailbox["id"], "my answer")
    with runtime.db.session() as db:
        again = focus.switch_chat(db, mailbox["id"], "signal:chat-1", recap=2)
        current = focus.get_focus(db, mailbox["id"])

    assert switched.chat is not None and switched.chat.focal and switched.chat.unread == 0
    assert [m.text for m in switched.recap] == ["message 1", "message 2"]
    assert switched.recap[0].line().endswith("Ada: message 1")
    assert [(m.direction, m.text) for m in again.recap] == [("in", "message 2"), ("out", "my answer")]
    assert again.recap[-1].sender == "you (agent)" and again.recap[-1].external_id == sent.external_id
    assert current is not None and current.id == "signal:chat-1"


def test_switch_chat_to_none_clears_focus(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1")

    with runtime.db.session() as db:
        focus.switch_chat(db, mailbox["id"], "signal:chat-1")
        cleared = focus.switch_chat(db, mailbox["id"], None)
        assert focus.get_focus(db, mailbox["id"]) is None

    assert cleared.chat is None and cleared.recap == []


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("chat-1", InvalidInputError),
        ("icq:chat-1", NotFoundError),
        ("signal:", InvalidInputError),
        ("signal:nobody", NotFoundError),
        ("telegram:chat-1", NotFoundError),
    ],
)
def test_switch_chat_refuses_malformed_and_unknown_addresses(
    client: TestClient, runtime: Runtime, account: AccountKey, address: str, error: type[Exception]
) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1")

    with runtime.db.session() as db, pytest.raises(error):
        focus.switch_chat(db, mailbox["id"], address)


def test_read_chat_pages_back_without_moving_focus_or_marking_read(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    for n in range(5):
        post_inbound(client, connection, f"m-{n}", f"message {n}")

    with runtime.db.session() as db:
        first = focus.read_chat(db, mailbox["id"], "signal:chat-1", limit=2)
        second = focus.read_chat(db, mailbox["id"], "signal:chat-1", limit=2, before=first.next_before)
        last = focus.read_chat(db, mailbox["id"], "signal:chat-1", limit=2, before=second.next_before)
        assert focus.get_focus(db, mailbox["id"]) is None

    assert [m.text for m in first.messages] == ["message 3", "message 4"]
    assert [m.text for m in second.messages] == ["message 1", "message 2"]
    assert [m.text for m in last.messages] == ["message 0"] and last.next_before is None
    assert last.chat.unread == 5


def test_read_chat_refuses_a_malformed_before(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1")

    with runtime.db.session() as db, pytest.raises(InvalidInputError):
        focus.read_chat(db, mailbox["id"], "signal:chat-1", before="yesterday")


def test_mailbox_token_authenticates_only_its_own_mailbox(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    first = create_mailbox(client, account, name="first")
    second = create_mailbox(client, account, name="second")

    with runtime.db.session() as db:
        assert focus.authenticate_mailbox(db, first["id"], first["mcp_token"]).id == first["id"]
        for mailbox_id, token in ((second["id"], first["mcp_token"]), (first["id"], ""), ("mbx_bad", "x")):
            with pytest.raises(AuthenticationError):
                focus.authenticate_mailbox(db, mailbox_id, token)


def test_send_message_goes_through_the_container_contract_and_is_stored(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    post_inbound(client, connection, "m-1", external_chat_id="+4915112345678")

    sent = _send(runtime, mailbox["id"], "On my way.", chat="signal:+4915112345678", reply_to="m-1")

    [request] = connector.requests
    assert request.headers["authorization"] == f"Bearer {CONNECTOR_TOKEN}"
    assert request.body["chat_id"] == "+4915112345678" and request.body["text"] == "On my way."
    assert request.body["reply_to"] == "m-1" and request.body["platform"] == "signal"
    assert request.body["connection_id"] == connection["id"] and request.body["options"] == {}
    with runtime.db.session() as db:
        stored = db.scalars(select(Message).where(Message.direction == "out")).one()
    assert (stored.id, stored.external_id, stored.text) == (sent.message_id, sent.external_id, "On my way.")
    assert sent.chat_id == "signal:+4915112345678"


def test_send_message_defaults_to_the_focal_chat_and_needs_one(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    post_inbound(client, connection, "m-1")

    with pytest.raises(NoFocusError):
        _send(runtime, mailbox["id"])
    with runtime.db.session() as db:
        focus.switch_chat(db, mailbox["id"], "signal:chat-1")
    sent = _send(runtime, mailbox["id"])

    assert sent.chat_id == "signal:chat-1"
    assert connector.requests[0].body["chat_id"] == "chat-1"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (ConnectorReply(429, {"code": "rate_limited", "message": "slow down"}, {"Retry-After": "7"}), RateLimitedError),
        (ConnectorReply(404, {"code": "chat_not_found", "message": "no such recipient"}), PlatformRefusedError),
        (ConnectorReply(503, {"code": "unavailable", "message": "signal-cli restarting"}), ConnectorUnavailableError),
        (ConnectorReply(200, {"ok": True}), ConnectorUnavailableError),
    ],
)
def test_connector_errors_are_typed_and_nothing_is_stored(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    connector: StandInConnector,
    reply: ConnectorReply,
    error: type[Exception],
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    post_inbound(client, connection, "m-1")
    connector.script = [reply]

    with pytest.raises(error) as raised:
        _send(runtime, mailbox["id"], chat="signal:chat-1")

    if isinstance(raised.value, RateLimitedError):
        assert raised.value.retry_after == 7.0
    with runtime.db.session() as db:
        assert db.scalars(select(Message).where(Message.direction == "out")).all() == []


def test_wrong_connector_credential_is_reported_as_unavailable(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector, token="not-the-connector-token")
    post_inbound(client, connection, "m-1")

    with pytest.raises(ConnectorUnavailableError, match="outbound_credential_id"):
        _send(runtime, mailbox["id"], chat="signal:chat-1")


def test_unreachable_connector_is_unavailable(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    with running_connector(CONNECTOR_TOKEN) as gone:
        pass  # started and stopped: its port now refuses connections
    mailbox, connection = _signal_mailbox(client, account, gone)
    post_inbound(client, connection, "m-1")

    with pytest.raises(ConnectorUnavailableError, match="cannot be reached"):
        _send(runtime, mailbox["id"], chat="signal:chat-1")


def test_platform_without_connector_is_a_clear_error(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="telegram")
    accept_directly(runtime, connection, "m-1")

    with pytest.raises(ConnectorUnavailableError, match="no telegram connector is available"):
        _send(runtime, mailbox["id"], chat="telegram:chat-1")
    with runtime.db.session() as db, pytest.raises(ConnectorUnavailableError, match="no telegram connector"):
        sending.send_message(db, runtime.vault, PlatformRegistry(), mailbox["id"], "hi", chat="telegram:chat-1")


def test_archived_connection_and_platform_mismatch_are_refused(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    post_inbound(client, connection, "m-1")

    with pytest.raises(InvalidInputError, match="signal chat"):
        _send(runtime, mailbox["id"], chat="signal:chat-1", platform="discord")
    client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)
    with pytest.raises(ConflictError, match="archived"):
        _send(runtime, mailbox["id"], chat="signal:chat-1")
    assert connector.requests == []


def test_empty_text_is_refused(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    mailbox, _ = _signal_mailbox(client, account)

    with pytest.raises(InvalidInputError, match="empty"):
        _send(runtime, mailbox["id"], "   ")


def test_recap_size_is_a_per_mailbox_setting(client: TestClient, runtime: Runtime, account: AccountKey) -> None:
    short = create_mailbox(client, account, name="short", recap_messages=2)
    default = create_mailbox(client, account, name="default")
    for mailbox in (short, default):
        connection = create_connection(client, account, mailbox["id"], platform="signal")
        for n in range(5):
            post_inbound(client, connection, f"m-{n}", f"message {n}", external_chat_id="+1555")

    with runtime.db.session() as db:
        short_recap = focus.switch_chat(db, short["id"], "signal:+1555", recap=4).recap
        default_recap = focus.switch_chat(db, default["id"], "signal:+1555", recap=4).recap

    assert [m.text for m in short_recap] == ["message 3", "message 4"]
    assert len(default_recap) == 4
    assert_error(client.post("/v1/mailboxes", json={"name": "x", "recap_messages": 101}, headers=account.headers), 422)
    updated = client.put(f"/v1/mailboxes/{default['id']}", json={"recap_messages": 1}, headers=account.headers)
    assert updated.json()["recap_messages"] == 1


def test_muting_a_chat_hides_it_from_the_list_until_unmuted(
    client: TestClient, runtime: Runtime, account: AccountKey
) -> None:
    mailbox, connection = _signal_mailbox(client, account)
    post_inbound(client, connection, "m-1", external_chat_id="alice")
    post_inbound(client, connection, "m-2", external_chat_id="bob")

    with runtime.db.session() as db:
        muted = focus.set_chat_muted(db, mailbox["id"], "signal:alice", muted=True)
    with runtime.db.session() as db:  # a fresh session: the service committed
        listed_while_muted = [c.id for c in focus.list_chats(db, mailbox["id"])]
        listed_with_muted = [c.id for c in focus.list_chats(db, mailbox["id"], include_muted=True)]
        focus.set_chat_muted(db, mailbox["id"], "signal:alice", muted=False)
    with runtime.db.session() as db:
        listed_after = [c.id for c in focus.list_chats(db, mailbox["id"])]
        with pytest.raises(NotFoundError):
            focus.set_chat_muted(db, mailbox["id"], "signal:nobody", muted=True)

    assert muted.muted is True
    assert listed_while_muted == ["signal:bob"]
    assert set(listed_with_muted) == set(listed_after) == {"signal:alice", "signal:bob"}


def test_an_archived_mailbox_refuses_focus_sends_and_updates_alike(
    client: TestClient, runtime: Runtime, account: AccountKey, connector: StandInConnector
) -> None:
    mailbox, connection = _signal_mailbox(client, account, connector)
    post_inbound(client, connection, "m-1")
    client.delete(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers)

    with runtime.db.session() as db, pytest.raises(ConflictError) as switching:
        focus.switch_chat(db, mailbox["id"], "signal:chat-1")
    with pytest.raises(ConflictError) as sending_:
        _send(runtime, mailbox["id"], chat="signal:chat-1")
    updating = client.put(f"/v1/mailboxes/{mailbox['id']}", json={"name": "renamed"}, headers=account.headers)

    assert switching.value.message == sending_.value.message == assert_error(updating, 409, "conflict")["message"]
    assert "archived" in switching.value.message
    assert connector.requests == []
