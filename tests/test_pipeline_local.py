"""Inbound -> delivery on the local queue, against a real webhook receiver on 127.0.0.1 (both backends)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from chatbox.local.consumer import records_per_chat
from chatbox.ports.queue import DeliveryJob, QueueRecord
from chatbox.runtime import Runtime
from chatbox.services.delivery_attempt import Deliverer
from chatbox.services.delivery_batch import CRASH_RETRY_MAX_SECONDS, deliver_batch
from chatbox.store.models import Delivery, Mailbox, QueueMessage
from chatbox.store.types import utcnow
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox, scrape_metrics
from tests.support.pipeline import (
    eventually,
    new_signing_secret,
    post_inbound,
    running_consumer,
    unreachable_database,
)
from tests.support.receiver import Received, Reply, WebhookReceiver, running_receiver

MAX_ATTEMPTS = 3
SLOW_SECONDS = 1.5
# Far beyond any wait here: a record left hidden for the visibility timeout instead of a retry delay times out a test.
VISIBILITY_SECONDS = 600.0


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
        local_queue_visibility_seconds=VISIBILITY_SECONDS,
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
    assert 'chatbox_deliveries_by_status{status="delivered"} 1.0' in scrape_metrics(client).text


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
        # An attempt already in flight when the mailbox paused still lands and counts as a failure:
        # let every delivery settle (held, or dead after its last attempt) before unpausing.
        eventually(lambda: all(d.status in ("held", "dead") for d in _deliveries(runtime, mailbox["id"])))
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

    kept = deliver_batch([crashing], runtime.deliverer, queue)

    assert kept == []
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


def _local_queue(runtime: Runtime) -> LocalQueue:
    assert isinstance(runtime.queue, LocalQueue)
    return runtime.queue


def _delivery_ids(records: list[QueueRecord]) -> list[str | None]:
    return [r.delivery_id() for r in records]


def test_local_queue_hands_out_a_chats_waiting_messages_together_and_in_order_like_sqs_fifo(runtime: Runtime) -> None:
    queue = _local_queue(runtime)
    queue.send([DeliveryJob("dlv_a1", "A"), DeliveryJob("dlv_a2", "A"), DeliveryJob("dlv_b1", "B")])

    first = queue.receive(10)
    assert _delivery_ids(first) == ["dlv_a1", "dlv_a2", "dlv_b1"]
    a1, a2, _ = first

    queue.send([DeliveryJob("dlv_a3", "A")])
    assert queue.receive(10) == []  # chat A has messages in flight: locked
    queue.retry_later(a2, 0)
    assert queue.receive(10) == []  # still locked while a1 is in flight, though a2 is visible again
    queue.delete(a1)
    assert _delivery_ids(queue.receive(10)) == ["dlv_a2", "dlv_a3"]


def test_local_queue_receive_caps_chats_and_messages_per_chat(runtime: Runtime) -> None:
    queue = _local_queue(runtime)
    queue.send([DeliveryJob(f"dlv_{chat}{n}", chat) for chat in "ABC" for n in (1, 2)])

    assert _delivery_ids(queue.receive(10, max_groups=2, max_per_group=1)) == ["dlv_A1", "dlv_B1"]
    assert _delivery_ids(queue.receive(10, max_groups=2, max_per_group=1)) == ["dlv_C1"]


def test_a_worker_takes_as_many_of_a_chats_records_as_it_can_post_within_the_visibility_timeout() -> None:
    assert records_per_chat(60, 15) == 3  # the defaults: one webhook timeout to spare
    assert records_per_chat(30, 15) == 1
    assert records_per_chat(VISIBILITY_SECONDS, 15) == 10  # at most an SQS batch


def _texts_of_chat(receiver: WebhookReceiver, chat: str) -> list[str]:
    return [r.json()["message"]["text"] for r in receiver.requests if r.json()["chat_id"] == f"signal:{chat}"]


def _fail_first_post_of(text: str) -> Callable[[Received], Reply]:
    """A receiver's answer: 500 to the first POST of the message `text`, 200 to everything else."""
    failed: list[Received] = []

    def respond(received: Received) -> Reply:
        if not failed and received.json()["message"]["text"] == text:
            failed.append(received)
            return Reply(status=500)
        return Reply()

    return respond


def test_a_failed_message_and_the_later_ones_of_its_chat_come_back_after_the_retry_backoff(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    post_inbound(client, connection, "a-1", "a one", external_chat_id="A")
    post_inbound(client, connection, "a-2", "a two", external_chat_id="A")
    post_inbound(client, connection, "b-1", "b one", external_chat_id="B")
    receiver.respond = _fail_first_post_of("a one")

    with running_consumer(runtime):
        # Bounded far below the visibility timeout: only the retry delay may hold chat A back.
        eventually(lambda: all(d.status == "delivered" for d in _deliveries(runtime, mailbox["id"])), timeout=10)

    assert _texts_of_chat(receiver, "A") == ["a one", "a one", "a two"]
    assert _texts_of_chat(receiver, "B") == ["b one"]


def _queued(runtime: Runtime) -> list[QueueMessage]:
    with runtime.db.session() as db:
        return list(db.scalars(select(QueueMessage).where(QueueMessage.queue == _local_queue(runtime).queue)))


def test_a_delivery_that_crashes_the_worker_comes_back_soon_not_after_the_visibility_timeout(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox, connection = _mailbox_with_connection(client, account, receiver)
    post_inbound(client, connection, "a-1", "a one", external_chat_id="A")
    post_inbound(client, connection, "a-2", "a two", external_chat_id="A")

    with unreachable_database() as down:
        # The worker's database is down: delivering raises, which no delivery decision covers.
        crashing = Deliverer(down, runtime.vault, runtime.deliverer.client, runtime.deliverer.policy)
        with running_consumer(runtime, crashing):
            eventually(lambda: any(m.receive_count >= 1 for m in _queued(runtime)))
    received = [m for m in _queued(runtime) if m.receive_count >= 1]
    assert receiver.requests == []
    assert max(m.visible_at - utcnow() for m in received).total_seconds() <= CRASH_RETRY_MAX_SECONDS

    with running_consumer(runtime):
        eventually(lambda: all(d.status == "delivered" for d in _deliveries(runtime, mailbox["id"])), timeout=10)

    assert _texts_of_chat(receiver, "A") == ["a one", "a two"]
