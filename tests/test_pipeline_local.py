"""Inbound -> delivery on the local queue, against a real webhook receiver on 127.0.0.1 (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.adapters.local_queue import DEAD_LETTER_QUEUE, LocalQueue
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services.delivery import deliver_record
from chatbox.store.models import Delivery, Mailbox
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox
from tests.support.pipeline import eventually, new_signing_secret, post_inbound, running_consumer
from tests.support.receiver import Reply, WebhookReceiver, running_receiver

MAX_ATTEMPTS = 3
SLOW_SECONDS = 1.5


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_private_webhooks=True,
        delivery_retry_base_seconds=0.01,
        delivery_max_attempts=MAX_ATTEMPTS,
        pause_after_failures=5,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _mailbox_with_connection(
    client: TestClient, account: AccountKey, receiver: WebhookReceiver, **fields: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url, **fields)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    return mailbox, connection


def _deliveries(runtime: Runtime, mailbox_id: str) -> list[Delivery]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox_id).order_by(Delivery.id)))


def test_inbound_message_reaches_webhook_signed_and_verifiable(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="sig", value=secret)
    mailbox, connection = _mailbox_with_connection(client, account, receiver, signing_credential_id=credential["id"])

    with running_consumer(runtime):
        accepted = post_inbound(
            client, connection, "m-1", "hi there", sender_name="Ada", chat_name="Ada", chat_type="direct"
        )
        [request] = receiver.wait_for(1)

    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "message"
    assert payload["mailbox_id"] == mailbox["id"]
    assert payload["chat_id"] == "signal:chat-1" == accepted["chat_id"]
    assert payload["platform"] == "signal"
    assert payload["focal"] is False
    assert "Ada" in payload["content"] and "hi there" in payload["content"]
    assert "signal:chat-1" in payload["content"]  # the chat list footer of a notification
    assert "ephemeral" not in payload
    assert payload["message"]["text"] == "hi there"
    assert payload["message"]["id"] == accepted["message_id"]
    assert request.headers["webhook-id"] == payload["id"]


def test_duplicate_external_message_id_is_delivered_once(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)

    first = post_inbound(client, connection, "m-1")
    second = post_inbound(client, connection, "m-1")
    with running_consumer(runtime):
        receiver.wait_for(1)
        eventually(lambda: all(d.status == "delivered" for d in _deliveries(runtime, mailbox["id"])))

    assert first["duplicate"] is False and second["duplicate"] is True
    assert second["message_id"] == first["message_id"]
    assert len(_deliveries(runtime, mailbox["id"])) == 1
    assert len(receiver.requests) == 1
    # Counted from the database: in `chatbox dev` the worker delivering is another process than /metrics.
    assert 'chatbox_deliveries_by_status{status="delivered"} 1.0' in client.get("/metrics").text


def test_webhook_auth_credential_is_sent_as_authorization(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    credential = create_credential(client, account, kind="webhook_auth", name="auth", value="Bearer harness-token")
    _, connection = _mailbox_with_connection(client, account, receiver, webhook_auth_credential_id=credential["id"])

    with running_consumer(runtime):
        post_inbound(client, connection, "m-1")
        [request] = receiver.wait_for(1)

    assert request.headers["authorization"] == "Bearer harness-token"
    assert "webhook-signature" not in request.headers


def test_failing_receiver_gets_exactly_max_attempts_then_dead_letter_then_redrive_delivers(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    receiver.default = Reply(status=500)

    with running_consumer(runtime):
        post_inbound(client, connection, "m-1")
        eventually(lambda: [d for d in _deliveries(runtime, mailbox["id"]) if d.status == "dead"])
        queue = runtime.queue
        assert isinstance(queue, LocalQueue)
        eventually(lambda: queue.depth(DEAD_LETTER_QUEUE) == 1)
        assert queue.depth() == 0  # nothing left that could make another attempt
        assert len(receiver.requests) == MAX_ATTEMPTS
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1

        health = client.get(f"/v1/mailboxes/{mailbox['id']}/health", headers=account.headers).json()
        assert health["dead_letters"] == 1 and health["last_error"] == "HTTP 500"

        receiver.default = Reply(status=204)
        redriven = client.post(f"/v1/mailboxes/{mailbox['id']}/redrive", headers=account.headers)
        assert redriven.status_code == 200 and redriven.json() == {"requeued": 1}
        eventually(lambda: all(d.status == "delivered" for d in _deliveries(runtime, mailbox["id"])))

    assert len(receiver.requests) == MAX_ATTEMPTS + 1


def test_chat_order_is_kept_when_the_first_message_needs_retries(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    receiver.script = [Reply(status=503), Reply(status=502)]

    for n in range(1, 5):
        post_inbound(client, connection, f"m-{n}", f"message {n}")
    with running_consumer(runtime):
        eventually(lambda: all(d.status == "delivered" for d in _deliveries(runtime, mailbox["id"])))

    texts = [r.json()["message"]["text"] for r in receiver.requests]
    assert texts[:3] == ["message 1"] * 3
    assert texts[3:] == ["message 2", "message 3", "message 4"]


def test_retry_after_is_honoured(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    receiver.script = [Reply(status=429, headers={"Retry-After": "1"})]

    with running_consumer(runtime):
        post_inbound(client, connection, "m-1")
        first, second = receiver.wait_for(2)

    assert second.at - first.at >= 0.9


def test_consecutive_failures_pause_the_mailbox_and_unpause_delivers_held_in_order(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    receiver.default = Reply(status=500)

    with running_consumer(runtime):
        for n in range(1, 3):
            post_inbound(client, connection, f"m-{n}", f"message {n}", external_chat_id=f"chat-{n}")
        eventually(lambda: _mailbox(runtime, mailbox["id"]).status == "paused")
        held_text = post_inbound(client, connection, "m-3", "message 3", external_chat_id="chat-3")
        assert held_text["duplicate"] is False
        health = client.get(f"/v1/mailboxes/{mailbox['id']}/health", headers=account.headers).json()
        assert health["status"] == "paused"
        assert health["consecutive_failures"] >= 5
        attempts_when_paused = len(receiver.requests)

        receiver.default = Reply(status=200)
        unpaused = client.post(f"/v1/mailboxes/{mailbox['id']}/unpause", headers=account.headers)
        assert unpaused.status_code == 200
        eventually(lambda: all(d.status in ("delivered", "dead") for d in _deliveries(runtime, mailbox["id"])))

    delivered_after = [r.json()["message"]["text"] for r in receiver.requests[attempts_when_paused:]]
    assert "message 3" in delivered_after
    assert _mailbox(runtime, mailbox["id"]).consecutive_failures == 0


def test_gone_receiver_pauses_the_mailbox_at_once(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    receiver.default = Reply(status=410)

    with running_consumer(runtime):
        post_inbound(client, connection, "m-1")
        eventually(lambda: _mailbox(runtime, mailbox["id"]).status == "paused")

    assert len(receiver.requests) == 1
    assert [d.status for d in _deliveries(runtime, mailbox["id"])] == ["held"]


def _mailbox(runtime: Runtime, mailbox_id: str) -> Mailbox:
    with runtime.db.session() as db:
        mailbox = db.get(Mailbox, mailbox_id)
        assert mailbox is not None
        return mailbox


def test_a_record_received_too_often_is_given_up_visibly(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    post_inbound(client, connection, "m-1")
    queue = runtime.queue
    assert isinstance(queue, LocalQueue)
    [record] = queue.receive(10)
    crashing = replace(record, receive_count=MAX_ATTEMPTS + 3)  # as if each earlier receive crashed the worker

    deliver_record(crashing, runtime.deliverer, queue)

    [delivery] = _deliveries(runtime, mailbox["id"])
    assert delivery.status == "dead" and "gave up" in (delivery.last_error or "")
    assert queue.depth(DEAD_LETTER_QUEUE) == 1 and queue.depth() == 0
    assert receiver.requests == []


def test_a_slow_failing_mailbox_does_not_delay_another(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    with running_receiver() as slow:
        slow.default = Reply(status=500, delay=SLOW_SECONDS)
        _, slow_connection = _mailbox_with_connection(client, account, slow)
        healthy, healthy_connection = _mailbox_with_connection(client, account, receiver)

        with running_consumer(runtime):
            post_inbound(client, slow_connection, "s-1", external_chat_id="slow-1")
            post_inbound(client, slow_connection, "s-2", external_chat_id="slow-2")
            post_inbound(client, healthy_connection, "h-1")
            [delivered] = receiver.wait_for(1)
            first_slow = slow.wait_for(1)[0]

    assert delivered.json()["mailbox_id"] == healthy["id"]
    assert delivered.at < first_slow.at + SLOW_SECONDS  # before the slow receiver had answered even once
