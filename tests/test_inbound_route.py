"""POST /v1/connections/{id}/messages: authentication, validation, idempotency, chats and unread counts."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.runtime import Runtime
from chatbox.store.models import Chat, Delivery, Mailbox, Message
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_mailbox

VALID = {"external_chat_id": "c-1", "external_message_id": "m-1", "text": "hi"}


@pytest.fixture
def connection(client: TestClient, account: AccountKey) -> dict[str, Any]:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    return create_connection(client, account, mailbox["id"], platform="signal")


def _post(client: TestClient, connection: dict[str, Any], body: Any, token: str | None = None) -> Any:
    return client.post(
        f"/v1/connections/{connection['id']}/messages",
        json=body,
        headers={"Authorization": f"Bearer {token or connection['inbound_token']}"},
    )


def test_accepted_message_answers_202_with_ids(client: TestClient, connection: dict[str, Any]) -> None:
    response = _post(client, connection, VALID)

    assert response.status_code == 202
    body = response.json()
    assert body["chat_id"] == "signal:c-1" and body["duplicate"] is False
    assert body["message_id"].startswith("msg_")


@pytest.mark.parametrize("token", ["wrong", "inb_" + "x" * 43])
def test_wrong_inbound_token_is_401_and_stores_nothing(
    client: TestClient, runtime: Runtime, connection: dict[str, Any], token: str
) -> None:
    response = _post(client, connection, VALID, token=token)

    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    with runtime.db.session() as db:
        assert db.scalars(select(Message)).all() == []


def test_missing_token_is_401_even_with_a_bad_body(client: TestClient, connection: dict[str, Any]) -> None:
    response = client.post(f"/v1/connections/{connection['id']}/messages", json={"nonsense": True})

    assert_error(response, 401, "unauthorized")


def test_an_api_key_does_not_open_the_inbound_route(
    client: TestClient, account: AccountKey, connection: dict[str, Any]
) -> None:
    assert_error(_post(client, connection, VALID, token=account.api_key), 401)


@pytest.mark.parametrize(
    "body",
    [
        {"external_chat_id": "c-1", "external_message_id": "m-1"},
        {"external_chat_id": "c-1", "text": "hi"},
        {"external_message_id": "m-1", "text": "hi"},
        {**VALID, "chat_type": "forum"},
        {**VALID, "attachments": [{"kind": "image"}]},
        {**VALID, "sent_at": "yesterday"},
        {**VALID, "event_type": "Not An Event"},
        {**VALID, "text": "x" * 70_000},
        {**VALID, "unexpected": 1},
        [VALID],
    ],
    ids=[
        "no-content",
        "no-message-id",
        "no-chat-id",
        "bad-chat-type",
        "attachment-without-reference",
        "bad-sent-at",
        "bad-event-type",
        "text-too-long",
        "unknown-field",
        "not-an-object",
    ],
)
def test_bad_bodies_are_422(client: TestClient, connection: dict[str, Any], body: Any) -> None:
    assert_error(_post(client, connection, body), 422)


def test_attachment_only_message_is_accepted(client: TestClient, connection: dict[str, Any]) -> None:
    body = {
        "external_chat_id": "c-1",
        "external_message_id": "m-9",
        "attachments": [{"kind": "image", "file_id": "f-1", "mime_type": "image/png", "size": 12}],
    }

    assert _post(client, connection, body).status_code == 202


def test_archived_connection_no_longer_accepts(
    client: TestClient, account: AccountKey, connection: dict[str, Any]
) -> None:
    client.delete(f"/v1/connections/{connection['id']}", headers=account.headers)

    assert_error(_post(client, connection, VALID), 401)


def test_archived_mailbox_refuses_with_409(client: TestClient, account: AccountKey, connection: dict[str, Any]) -> None:
    client.delete(f"/v1/mailboxes/{connection['mailbox_id']}", headers=account.headers)

    assert_error(_post(client, connection, VALID), 409, "conflict")


def test_chat_is_upserted_and_unread_counts_skip_the_focal_chat(
    client: TestClient, runtime: Runtime, connection: dict[str, Any]
) -> None:
    _post(client, connection, {**VALID, "chat_name": "Ada", "chat_type": "direct"})
    _post(client, connection, {**VALID, "external_message_id": "m-2", "chat_name": "Ada L."})
    _post(client, connection, {**VALID, "external_message_id": "m-3", "event_type": "reaction"})
    with runtime.db.session() as db:
        chat = db.scalars(select(Chat)).one()
        assert (chat.name, chat.type, chat.unread_count) == ("Ada L.", "direct", 2)
        mailbox = db.get(Mailbox, connection["mailbox_id"])
        assert mailbox is not None
        mailbox.focal_chat_id = chat.id
        db.commit()

    _post(client, connection, {**VALID, "external_message_id": "m-4"})

    with runtime.db.session() as db:
        assert db.scalars(select(Chat)).one().unread_count == 2
        assert len(db.scalars(select(Delivery)).all()) == 4


def test_same_external_id_in_another_connection_is_not_a_duplicate(
    client: TestClient, account: AccountKey, connection: dict[str, Any]
) -> None:
    other_mailbox = create_mailbox(client, account, name="other")
    other = create_connection(client, account, other_mailbox["id"], platform="signal")

    first = _post(client, connection, VALID).json()
    second = _post(client, other, VALID).json()

    assert first["duplicate"] is False and second["duplicate"] is False
    assert first["message_id"] != second["message_id"]


def test_paused_mailbox_still_accepts_and_holds(
    client: TestClient, runtime: Runtime, connection: dict[str, Any]
) -> None:
    with runtime.db.session() as db:
        mailbox = db.get(Mailbox, connection["mailbox_id"])
        assert mailbox is not None
        mailbox.status = "paused"
        db.commit()

    assert _post(client, connection, VALID).status_code == 202

    with runtime.db.session() as db:
        assert [d.status for d in db.scalars(select(Delivery))] == ["held"]
