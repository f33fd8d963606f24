"""Service events: subscriptions over REST, events written with what caused them, signed POSTs to real receivers
on 127.0.0.1, their own retries, and message delivery untouched by slow or failing subscribers (both backends)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.errors import ConnectorUnavailableError
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.services.event_dispatch import EventDispatcher, EventRetryPolicy
from chatbox.services.sending import send_message
from chatbox.store.models import EventDelivery, ServiceEvent
from tests.conftest import AccountKey, platforms_without_connectors
from tests.support.api import assert_error, create_connection, create_credential, create_mailbox
from tests.support.pipeline import eventually, new_signing_secret, post_inbound, running_consumer
from tests.support.receiver import Received, Reply, WebhookReceiver, running_receiver

Json = dict[str, Any]
QUICK_RETRIES = EventRetryPolicy(delays=(0.01, 0.01), claim_seconds=30.0)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_private_webhooks=True,
        delivery_retry_base_seconds=0.01,
        delivery_max_attempts=2,
        pause_after_failures=50,
        local_queue_visibility_seconds=600.0,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def dispatcher(runtime: Runtime, policy: EventRetryPolicy = QUICK_RETRIES) -> EventDispatcher:
    return EventDispatcher(runtime.db, runtime.vault, runtime.webhook_sender(), policy)


def subscribe(client: TestClient, account: AccountKey, url: str, events: list[str], **fields: Any) -> Json:
    response = client.post(
        "/v1/event-subscriptions", json={"url": url, "events": events, **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def events_of(received: list[Received], event_type: str | None = None) -> list[Json]:
    bodies = [r.json() for r in received]
    return [b for b in bodies if event_type is None or b["type"] == event_type]


def run_until(events: EventDispatcher, receiver: WebhookReceiver, count: int) -> list[Received]:
    """Dispatch rounds until `receiver` got `count` requests (bounded)."""

    def arrived() -> list[Received] | None:
        events.run_once()
        return list(receiver.requests) if len(receiver.requests) >= count else None

    return eventually(arrived)


# --- subscriptions ----------------------------------------------------------------------------


def test_subscriptions_are_created_listed_read_replaced_and_deleted(
    client: TestClient, account: AccountKey, other_account: AccountKey
) -> None:
    created = subscribe(client, account, "https://hooks.example.test/a", ["new_chat", "mailbox_paused"])
    path = f"/v1/event-subscriptions/{created['id']}"

    listed = client.get("/v1/event-subscriptions", headers=account.headers).json()["items"]
    replaced = client.put(
        path, json={"url": "https://hooks.example.test/b", "events": ["delivery_failed"]}, headers=account.headers
    )
    foreign = client.get(path, headers=other_account.headers)
    deleted = client.delete(path, headers=account.headers)
    gone = client.get(path, headers=account.headers)

    assert created["id"].startswith("esub_")
    assert created["events"] == ["mailbox_paused", "new_chat"] and created["signing_credential_id"] is None
    assert [s["id"] for s in listed] == [created["id"]]
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["url"], replaced.json()["events"]) == ("https://hooks.example.test/b", ["delivery_failed"])
    assert_error(foreign, 404)
    assert deleted.status_code == 204
    assert_error(gone, 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"url": "https://hooks.example.test/a", "events": ["no_such_event"]}, 422),
        ({"url": "https://hooks.example.test/a", "events": []}, 422),
        ({"url": "ftp://hooks.example.test/a", "events": ["new_chat"]}, 422),
        ({"url": "http://169.254.169.254/latest", "events": ["new_chat"]}, 422),
        ({"url": "https://hooks.example.test/a", "events": ["new_chat"], "signing_credential_id": "cred_x"}, 422),
        ({"url": "https://hooks.example.test/a", "events": ["new_chat"], "extra": 1}, 422),
    ],
    ids=["unknown-event", "no-events", "not-http", "metadata-address", "unknown-credential", "extra-field"],
)
def test_bad_subscriptions_are_refused_with_a_clear_4xx(
    client: TestClient, account: AccountKey, body: Json, status: int
) -> None:
    response = client.post("/v1/event-subscriptions", json=body, headers=account.headers)

    assert_error(response, status)
    assert client.get("/v1/event-subscriptions", headers=account.headers).json()["items"] == []


def test_loopback_subscribers_follow_the_webhook_address_policy(runtime: Runtime, account: AccountKey) -> None:
    strict = build_runtime(
        runtime.settings.model_copy(update={"allow_private_webhooks": False, "allow_loopback_webhooks": False}),
        platforms=platforms_without_connectors(),
    )
    try:
        with TestClient(create_app(strict)) as client:
            response = client.post(
                "/v1/event-subscriptions",
                json={"url": "http://127.0.0.1:9/hook", "events": ["new_chat"]},
                headers=account.headers,
            )
    finally:
        strict.close()

    assert_error(response, 422)


# --- events -----------------------------------------------------------------------------------


def test_a_new_chat_event_is_signed_and_verifiable(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="events", value=secret)
    subscribe(client, account, receiver.url, ["new_chat"], signing_credential_id=credential["id"])
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="signal")

    post_inbound(client, connection, "m-1", chat_name="Ada")
    post_inbound(client, connection, "m-2")  # same chat: no second new_chat
    post_inbound(client, connection, "m-3", external_chat_id="chat-2")
    [first, second] = run_until(dispatcher(runtime), receiver, 2)

    payload = Webhook(secret).verify(first.body, first.headers)
    assert set(payload) == {"id", "type", "occurred_at", "account_id", "mailbox_id", "data"}
    assert payload["id"].startswith("evt_") and first.headers["webhook-id"] == payload["id"]
    assert (payload["type"], payload["account_id"], payload["mailbox_id"]) == (
        "new_chat",
        account.account_id,
        mailbox["id"],
    )
    assert payload["data"]["chat_id"] == "signal:chat-1" and payload["data"]["name"] == "Ada"
    assert Webhook(secret).verify(second.body, second.headers)["data"]["chat_id"] == "signal:chat-2"


def test_events_written_before_a_restart_are_sent_after_it(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    subscribe(client, account, receiver.url, ["new_chat"])
    mailbox = create_mailbox(client, account)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    post_inbound(client, connection, "m-1")  # nothing dispatches in this process

    restarted = build_runtime(runtime.settings, platforms=platforms_without_connectors())
    try:
        [request] = run_until(dispatcher(restarted), receiver, 1)
    finally:
        restarted.close()

    assert request.json()["type"] == "new_chat"


def test_failed_and_dead_lettered_deliveries_and_a_pause_are_events(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    with running_receiver() as agent:
        agent.default = Reply(500)
        subscribe(
            client,
            account,
            receiver.url,
            ["delivery_failed", "message_dead_lettered", "mailbox_paused", "mailbox_unpaused"],
        )
        mailbox = create_mailbox(client, account, webhook_url=agent.url)
        connection = create_connection(client, account, mailbox["id"], platform="signal")
        events = dispatcher(runtime)

        with running_consumer(runtime):
            accepted = post_inbound(client, connection, "m-1")
            run_until(events, receiver, 3)  # two failed attempts (max 2), then dead
            agent.default = Reply(410)
            post_inbound(client, connection, "m-2")
            run_until(events, receiver, 4)
        unpaused = client.post(f"/v1/mailboxes/{mailbox['id']}/unpause", headers=account.headers)
        assert unpaused.status_code == 200, unpaused.text
        received = run_until(events, receiver, 5)

    failed = events_of(received, "delivery_failed")
    assert [e["data"]["attempt"] for e in failed] == [1, 2]
    assert all(e["data"]["message_id"] == accepted["message_id"] for e in failed)
    assert failed[0]["data"]["error"] == "HTTP 500"
    [dead] = events_of(received, "message_dead_lettered")
    assert dead["data"]["message_id"] == accepted["message_id"] and dead["data"]["attempts"] == 2
    [paused] = events_of(received, "mailbox_paused")
    assert "410" in paused["data"]["reason"] and paused["mailbox_id"] == mailbox["id"]
    assert len(events_of(received, "mailbox_unpaused")) == 1


def test_a_failing_subscriber_is_retried_on_its_own_schedule_then_given_up(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    receiver.default = Reply(503)
    subscribe(client, account, receiver.url, ["new_chat"])
    mailbox = create_mailbox(client, account)
    post_inbound(client, create_connection(client, account, mailbox["id"], platform="signal"), "m-1")

    received = run_until(dispatcher(runtime), receiver, QUICK_RETRIES.max_attempts)

    assert len({r.headers["webhook-id"] for r in received}) == 1  # the same event, retried
    with runtime.db.session() as db:
        [delivery] = db.scalars(select(EventDelivery)).all()
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("dead", 3, "HTTP 503")


def test_events_go_only_to_subscriptions_of_their_account_and_type(
    client: TestClient, runtime: Runtime, account: AccountKey, other_account: AccountKey, receiver: WebhookReceiver
) -> None:
    with running_receiver() as others:
        subscribe(client, other_account, others.url, ["new_chat"])
        subscribe(client, account, others.url, ["mailbox_paused"])
        subscribe(client, account, receiver.url, ["new_chat"])
        mailbox = create_mailbox(client, account)
        post_inbound(client, create_connection(client, account, mailbox["id"], platform="signal"), "m-1")

        run_until(dispatcher(runtime), receiver, 1)

        assert others.requests == []


def test_slow_and_failing_subscribers_never_hold_up_message_delivery(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    chats, per_chat = 3, 4
    with running_receiver() as slow, running_receiver() as failing:
        slow.default = Reply(200, delay=1.0)
        failing.default = Reply(500)
        subscribe(client, account, slow.url, ["new_chat"])
        subscribe(client, account, failing.url, ["new_chat"])
        mailbox = create_mailbox(client, account, webhook_url=receiver.url)
        connection = create_connection(client, account, mailbox["id"], platform="signal")
        stop = threading.Event()
        events = threading.Thread(target=dispatcher(runtime).run, args=(stop, 0.01), daemon=True)
        events.start()
        try:
            with running_consumer(runtime):
                for number in range(per_chat):
                    for chat in range(chats):
                        post_inbound(client, connection, f"m-{chat}-{number}", f"{number}", external_chat_id=f"c{chat}")
                delivered = receiver.wait_for(chats * per_chat, timeout=30)
            slow.wait_for(chats, timeout=30)
            failing.wait_for(chats, timeout=30)
        finally:
            stop.set()
            events.join(timeout=30)
        assert not events.is_alive()

    assert len(delivered) == chats * per_chat
    for chat in range(chats):
        texts = [r.json()["message"]["text"] for r in delivered if r.json()["chat_id"] == f"signal:c{chat}"]
        assert texts == [str(n) for n in range(per_chat)]
    assert all(r.json()["type"] == "message" for r in delivered)


def test_deleting_a_subscription_drops_its_undelivered_events(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    created = subscribe(client, account, receiver.url, ["new_chat"])
    mailbox = create_mailbox(client, account)
    post_inbound(client, create_connection(client, account, mailbox["id"], platform="signal"), "m-1")
    events = dispatcher(runtime)
    events.fan_out()

    client.delete(f"/v1/event-subscriptions/{created['id']}", headers=account.headers)

    assert events.run_once() == 0
    assert receiver.requests == []


def test_a_send_the_connector_cannot_make_is_a_connection_error_event(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    subscribe(client, account, receiver.url, ["connection_error"])
    mailbox = create_mailbox(client, account)
    # A Signal connection whose connector program was never given an address to be reached at.
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    post_inbound(client, connection, "m-1")

    with runtime.db.session() as db, pytest.raises(ConnectorUnavailableError):
        send_message(db, runtime.vault, runtime.platforms, mailbox["id"], "hello", chat="signal:chat-1")
    [request] = run_until(dispatcher(runtime), receiver, 1)

    event = request.json()
    assert (event["type"], event["mailbox_id"]) == ("connection_error", mailbox["id"])
    assert event["data"]["connection_id"] == connection["id"] and event["data"]["platform"] == "signal"
    assert event["data"]["error"]


def test_sent_events_are_pruned_after_the_retention_but_pending_ones_stay(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    with running_receiver() as failing:
        failing.default = Reply(500)
        subscribe(client, account, receiver.url, ["new_chat"])
        subscribe(client, account, failing.url, ["new_chat"])
        mailbox = create_mailbox(client, account)
        post_inbound(client, create_connection(client, account, mailbox["id"], platform="signal"), "m-1")
        patient = EventRetryPolicy(delays=(600.0,), retention=timedelta(0))
        events = dispatcher(runtime, patient)
        run_until(events, receiver, 1)
        failing.wait_for(1)

        events.prune()

    with runtime.db.session() as db:
        left = db.scalars(select(EventDelivery)).all()
        assert [(d.status, d.attempts) for d in left] == [("pending", 1)]
        assert db.scalars(select(ServiceEvent)).all() != []
        left[0].status = "dead"
        db.commit()
    assert events.prune() == 1
    with runtime.db.session() as db:
        assert db.scalars(select(ServiceEvent)).all() == []
