"""The SQS adapter and the delivery Lambda entry against moto's real server (both backends)."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.adapters.sqs_queue import SqsQueue
from chatbox.domain.settings import Settings, get_settings
from chatbox.domain.vault import generate_key
from chatbox.ports.queue import DeliveryJob, QueueError, QueueRecord
from chatbox.runtime import Runtime
from chatbox.services.delivery_batch import deliver_batch
from chatbox.services.delivery_requeue import sweep_unenqueued
from chatbox.store.models import Delivery
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox
from tests.support.pipeline import eventually, new_signing_secret, post_inbound, unreachable_database
from tests.support.receiver import Reply, WebhookReceiver, running_receiver
from tests.support.sqs import SqsStack, create_queues, moto_server
from tests.test_lambda_api import LambdaContext

EVENTS = Path(__file__).parent / "events"
VISIBILITY_SECONDS = 1080


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def sqs(moto_endpoint: str, aws_env: None) -> SqsStack:
    # The template's visibility timeout: a record reported failed without a visibility change is gone for 18 min.
    return create_queues(moto_endpoint, visibility_timeout=VISIBILITY_SECONDS)


@pytest.fixture
def settings(db_url: str, tmp_path: Path, sqs: SqsStack) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_private_webhooks=True,
        delivery_retry_base_seconds=0.01,
        queue="sqs",
        sqs_queue_url=sqs.queue_url,
        sqs_dead_letter_queue_url=sqs.dead_letter_queue_url,
        aws_endpoint_url=sqs.endpoint,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _queue(runtime: Runtime) -> SqsQueue:
    assert isinstance(runtime.queue, SqsQueue)
    return runtime.queue


def _receive_all(queue: SqsQueue, expected: int) -> list[QueueRecord]:
    records: list[QueueRecord] = []

    def more() -> bool:
        records.extend(queue.receive(10))
        return len(records) >= expected

    eventually(more, timeout=5)
    return records


def test_sqs_end_to_end_inbound_to_verified_webhook(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    secret = new_signing_secret()
    credential = create_credential(client, account, kind="hmac_signing", name="sig", value=secret)
    mailbox = create_mailbox(client, account, webhook_url=receiver.url, signing_credential_id=credential["id"])
    connection = create_connection(client, account, mailbox["id"], platform="discord")

    post_inbound(client, connection, "m-1", "over sqs")
    queue = _queue(runtime)
    records = _receive_all(queue, 1)
    failed = deliver_batch(records, runtime.deliverer, queue)
    for record in records:
        if record.message_id not in failed:
            queue.delete(record)

    assert failed == []
    [request] = receiver.wait_for(1)
    assert Webhook(secret).verify(request.body, request.headers)["message"]["text"] == "over sqs"
    assert records[0].group_id  # FIFO: every message carries its chat as the group


def test_sqs_message_received_too_often_moves_to_the_dead_letter_queue(runtime: Runtime, sqs: SqsStack) -> None:
    queue = _queue(runtime)
    queue.send([DeliveryJob("dlv_poison", "chat_x")])

    for _ in range(3):  # maxReceiveCount
        [record] = _receive_all(queue, 1)
        queue.retry_later(record, 0)

    assert queue.receive(10) == []
    dead = sqs.client().receive_message(QueueUrl=sqs.dead_letter_queue_url, MaxNumberOfMessages=10)
    assert [json.loads(m["Body"]) for m in dead["Messages"]] == [{"delivery_id": "dlv_poison"}]


def test_crash_between_commit_and_queue_send_loses_nothing(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, sqs: SqsStack
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    good_queue = _queue(runtime)
    # The queue is unreachable at the moment of the send: what a crash right after commit leaves behind.
    runtime.queue = SqsQueue(good_queue.client, sqs.queue_url + "-missing.fifo", sqs.dead_letter_queue_url)
    with pytest.raises(QueueError):
        runtime.queue.send([DeliveryJob("dlv_probe", "chat_probe")])

    accepted = post_inbound(client, connection, "m-1", "survives")
    with runtime.db.session() as db:
        [delivery] = db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox["id"]))
        assert delivery.status == "pending" and delivery.enqueued_at is None

    with runtime.db.session() as db:
        assert sweep_unenqueued(db, good_queue, grace_seconds=0) == 1
    records = _receive_all(good_queue, 1)
    assert deliver_batch(records, runtime.deliverer, good_queue) == []
    [request] = receiver.wait_for(1)
    assert request.json()["message"]["id"] == accepted["message_id"]


@pytest.fixture
def delivery_handler(settings: Settings, monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> Iterator[ModuleType]:
    """functions/delivery/handler.py imported fresh, configured through the environment like on Lambda."""
    for name, value in {
        "CHATBOX_DB_URL": settings.db_url,
        "CHATBOX_VAULT_KEY": settings.vault_key,
        "CHATBOX_QUEUE": "sqs",
        "CHATBOX_SQS_QUEUE_URL": settings.sqs_queue_url,
        "CHATBOX_SQS_DEAD_LETTER_QUEUE_URL": settings.sqs_dead_letter_queue_url,
        "CHATBOX_AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "CHATBOX_ALLOW_PRIVATE_WEBHOOKS": "1",
        "CHATBOX_DELIVERY_RETRY_BASE_SECONDS": "0.01",
        "CHATBOX_HOME": str(settings.home),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    sys.modules.pop("functions.delivery.handler", None)
    module = importlib.import_module("functions.delivery.handler")
    try:
        yield module
    finally:
        module.runtime.close()
        sys.modules.pop("functions.delivery.handler", None)
        get_settings.cache_clear()


def _event_for(deliveries: list[tuple[str, str]]) -> dict[str, Any]:
    """The recorded SQS FIFO event with our delivery ids and groups filled in."""
    event: dict[str, Any] = json.loads((EVENTS / "sqs_fifo_delivery.json").read_text())
    for record, (delivery_id, group) in zip(event["Records"], deliveries, strict=True):
        record["body"] = json.dumps({"delivery_id": delivery_id})
        record["attributes"]["MessageGroupId"] = group
    return event


def test_lambda_entry_reports_failed_record_and_the_rest_of_its_group(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    receiver: WebhookReceiver,
    delivery_handler: ModuleType,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    post_inbound(client, connection, "a-1", "a one", external_chat_id="A")
    post_inbound(client, connection, "a-2", "a two", external_chat_id="A")
    post_inbound(client, connection, "b-1", "b one", external_chat_id="B")
    with runtime.db.session() as db:
        rows = list(db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox["id"]).order_by(Delivery.id)))
    receiver.script = [Reply(status=500)]  # the first POST (chat A's head) fails

    event = _event_for([(rows[0].id, rows[0].chat_id), (rows[1].id, rows[1].chat_id), (rows[2].id, rows[2].chat_id)])
    capsys.readouterr()
    response = delivery_handler.handler(event, LambdaContext(function_name="chatbox-delivery"))
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]

    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {event["Records"][0]["messageId"], event["Records"][1]["messageId"]}
    # The invocation's figures, printed as EMF when it returned: one failed attempt, one delivered.
    attempts = {line["outcome"]: line["chatbox_deliveries"] for line in printed if "chatbox_deliveries" in line}
    assert attempts == {"failed": [1.0], "delivered": [1.0]}
    assert all(len(line["chatbox_delivery_duration_seconds"]) == 1 for line in printed if "chatbox_deliveries" in line)
    assert [r.json()["message"]["text"] for r in receiver.wait_for(2)] == ["a one", "b one"]

    # A warm second invocation with the same records: chat A now goes through, in order; B is not re-sent.
    second = delivery_handler.handler(event, LambdaContext(function_name="chatbox-delivery"))
    assert second["batchItemFailures"] == []
    texts = [r.json()["message"]["text"] for r in receiver.wait_for(4)]
    assert texts == ["a one", "b one", "a one", "a two"]


def test_scheduled_invocation_sweeps_deliveries_whose_send_was_lost(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, delivery_handler: ModuleType
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    good_queue = _queue(runtime)
    runtime.queue = SqsQueue(good_queue.client, good_queue.queue_url + "-missing.fifo", "")
    post_inbound(client, connection, "m-1", "lost hand-off")
    delivery_handler.runtime.settings.sweep_grace_seconds = 0

    result = delivery_handler.handler(
        json.loads((EVENTS / "eventbridge_scheduled.json").read_text()), LambdaContext(function_name="chatbox-delivery")
    )

    assert result == {"swept": 1, "events_attempted": 0}
    [record] = _receive_all(good_queue, 1)
    assert json.loads(record.body)["delivery_id"].startswith("dlv_")


def test_scheduled_invocation_sends_due_service_events(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, delivery_handler: ModuleType
) -> None:
    subscribed = client.post(
        "/v1/event-subscriptions", json={"url": receiver.url, "events": ["new_chat"]}, headers=account.headers
    )
    assert subscribed.status_code == 201, subscribed.text
    mailbox = create_mailbox(client, account)
    post_inbound(client, create_connection(client, account, mailbox["id"], platform="discord"), "m-1")

    result = delivery_handler.handler(
        json.loads((EVENTS / "eventbridge_scheduled.json").read_text()), LambdaContext(function_name="chatbox-delivery")
    )

    assert result["events_attempted"] == 1
    [request] = receiver.wait_for(1)
    assert request.json()["type"] == "new_chat" and request.json()["data"]["chat_id"] == "discord:chat-1"


def _deduplication_ids(sqs: SqsStack) -> list[str]:
    response = sqs.client().receive_message(
        QueueUrl=sqs.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageDeduplicationId"]
    )
    return [m["Attributes"]["MessageDeduplicationId"] for m in response.get("Messages", [])]


def test_redrive_uses_a_fresh_deduplication_id_so_fifo_does_not_drop_it(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, sqs: SqsStack
) -> None:
    # Real SQS FIFO silently drops a message whose deduplication id it saw in the last 5 minutes.
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    receiver.default = Reply(status=500)
    post_inbound(client, connection, "m-1")
    queue = _queue(runtime)
    [record] = _receive_all(queue, 1)
    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        delivery.attempts = runtime.settings.delivery_max_attempts - 1
        db.commit()
    assert deliver_batch([record], runtime.deliverer, queue) == []  # the last attempt: dead-lettered
    first_send = json.loads(record.body)["delivery_id"]

    requeued = client.post(f"/v1/mailboxes/{mailbox['id']}/redrive", headers=account.headers).json()

    assert requeued == {"requeued": 1}
    [dedupe] = eventually(lambda: _deduplication_ids(sqs), timeout=5)
    assert dedupe.startswith(first_send) and dedupe != first_send


def _event_of(records: list[QueueRecord]) -> dict[str, Any]:
    """The Lambda event SQS would deliver for records received from the queue (real receipt handles)."""
    shape = json.loads((EVENTS / "sqs_fifo_delivery.json").read_text())["Records"][0]
    event_records = []
    for record in records:
        event_record = copy.deepcopy(shape)
        event_record.update(messageId=record.message_id, receiptHandle=record.receipt, body=record.body)
        event_record["attributes"].update(
            MessageGroupId=record.group_id, ApproximateReceiveCount=str(record.receive_count)
        )
        event_records.append(event_record)
    return {"Records": event_records}


def _invoke_as_lambda(handler: ModuleType, queue: SqsQueue, records: list[QueueRecord]) -> set[str]:
    """What Lambda does with a batch: invoke, then delete the records not reported failed. Returns the failed ids."""
    response = handler.handler(_event_of(records), LambdaContext(function_name="chatbox-delivery"))
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for record in records:
        if record.message_id not in failed:
            queue.delete(record)
    return failed


def _visible_and_in_flight(sqs: SqsStack) -> tuple[int, int]:
    attributes = sqs.client().get_queue_attributes(
        QueueUrl=sqs.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _post_chat_a_twice_and_chat_b(client: TestClient, account: AccountKey, receiver: WebhookReceiver) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    post_inbound(client, connection, "a-1", "a one", external_chat_id="A")
    post_inbound(client, connection, "a-2", "a two", external_chat_id="A")
    post_inbound(client, connection, "b-1", "b one", external_chat_id="B")


# The records' return is read from the queue's counts rather than by receiving them: moto hands out
# a FIFO group's messages out of order once several of them were in flight together (real SQS keeps
# the order). The order on redelivery is asserted with a warm invocation above.


def test_lambda_entry_brings_a_failed_chat_back_after_the_retry_backoff_not_the_visibility_timeout(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    receiver: WebhookReceiver,
    delivery_handler: ModuleType,
    sqs: SqsStack,
) -> None:
    _post_chat_a_twice_and_chat_b(client, account, receiver)
    queue = _queue(runtime)
    batch = _receive_all(queue, 3)
    receiver.script = [Reply(status=500)]  # the first POST (chat A's first message) fails

    failed = _invoke_as_lambda(delivery_handler, queue, batch)

    a1, a2, _ = batch
    assert failed == {a1.message_id, a2.message_id}
    assert [r.json()["message"]["text"] for r in receiver.requests] == ["a one", "b one"]
    # Both of chat A's records are visible again after the retry delay (a second here), not after 1080 s.
    eventually(lambda: _visible_and_in_flight(sqs) == (2, 0), timeout=5)


def test_lambda_entry_brings_a_crashed_batch_back_soon_not_after_the_visibility_timeout(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    receiver: WebhookReceiver,
    delivery_handler: ModuleType,
    sqs: SqsStack,
) -> None:
    _post_chat_a_twice_and_chat_b(client, account, receiver)
    queue = _queue(runtime)
    batch = _receive_all(queue, 3)
    deliverer = delivery_handler.runtime.deliverer
    working = deliverer.db

    with unreachable_database() as down:
        deliverer.db = down  # the database is down for this invocation: delivering raises
        try:
            failed = _invoke_as_lambda(delivery_handler, queue, batch)
        finally:
            deliverer.db = working

    assert failed == {record.message_id for record in batch}
    assert receiver.requests == []
    eventually(lambda: _visible_and_in_flight(sqs) == (3, 0), timeout=5)


def test_sweeper_resend_after_a_failed_redrive_is_not_dropped_by_fifo_deduplication(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, sqs: SqsStack
) -> None:
    # The admin tools re-enqueue (unpause, redrive); when that hand-off fails the sweeper sends the delivery
    # later. Under the id of an earlier send FIFO would drop it (5-minute window) and it would stay pending.
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    receiver.default = Reply(status=500)
    post_inbound(client, connection, "m-1", "comes back")
    queue = _queue(runtime)
    [record] = _receive_all(queue, 1)
    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        delivery.attempts = runtime.settings.delivery_max_attempts - 1
        db.commit()
    assert deliver_batch([record], runtime.deliverer, queue) == []  # dead, off the queue
    runtime.queue = SqsQueue(queue.client, sqs.queue_url + "-missing.fifo", sqs.dead_letter_queue_url)
    assert client.post(f"/v1/mailboxes/{mailbox['id']}/redrive", headers=account.headers).json() == {"requeued": 1}

    receiver.default = Reply()
    with runtime.db.session() as db:
        assert sweep_unenqueued(db, queue, grace_seconds=0) == 1
    [dedupe] = eventually(lambda: _deduplication_ids(sqs), timeout=5)
    assert dedupe != json.loads(record.body)["delivery_id"]


def test_a_backoff_longer_than_sqs_visibility_allows_is_kept_by_the_database(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, sqs: SqsStack
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    post_inbound(client, connection, "m-1", "later")
    queue = _queue(runtime)
    [record] = _receive_all(queue, 1)
    due = datetime.now(UTC) + timedelta(hours=30)  # SQS hides a received message at most 12 h
    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        delivery.next_attempt_at = due
        db.commit()

    assert deliver_batch([record], runtime.deliverer, queue) == [record.message_id]

    assert receiver.requests == []  # back early (as after 12 h): not attempted, hidden again
    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        assert (delivery.attempts, delivery.deferrals, delivery.status) == (0, 1, "pending")
    assert _visible_and_in_flight(sqs) == (0, 1)
    # The longest visibility SQS accepts, set from a receive: the record would be back within 12 h.
    queue.retry_later(record, (due - datetime.now(UTC)).total_seconds())


def test_a_failed_attempt_schedules_its_retry_in_the_database(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    receiver.default = Reply(status=503, headers={"retry-after": "7200"})
    post_inbound(client, connection, "m-1", "busy")
    queue = _queue(runtime)
    [record] = _receive_all(queue, 1)
    before = datetime.now(UTC)

    assert deliver_batch([record], runtime.deliverer, queue) == [record.message_id]

    with runtime.db.session() as db:
        delivery = db.scalars(select(Delivery)).one()
        assert delivery.attempts == 1 and delivery.next_attempt_at is not None
        assert delivery.next_attempt_at >= before + timedelta(seconds=7200)


def test_a_message_re_sent_by_the_sweeper_still_goes_out_before_the_later_ones_of_its_chat(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver, sqs: SqsStack
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="discord")
    good_queue = _queue(runtime)
    runtime.queue = SqsQueue(good_queue.client, sqs.queue_url + "-missing.fifo", sqs.dead_letter_queue_url)
    post_inbound(client, connection, "m-1", "first", external_chat_id="A")
    post_inbound(client, connection, "m-2", "second", external_chat_id="A")
    with runtime.db.session() as db:
        first_id, second_id = [d.id for d in db.scalars(select(Delivery).order_by(Delivery.id))]
        chat_id = db.get(Delivery, second_id).chat_id  # type: ignore[union-attr]
    # The second's hand-off went through and the first's was lost: the second is on the queue alone.
    good_queue.send([DeliveryJob(second_id, chat_id)])
    [second] = _receive_all(good_queue, 1)

    assert deliver_batch([second], runtime.deliverer, good_queue) == [second.message_id]  # waits for the first
    assert receiver.requests == []

    with runtime.db.session() as db:
        assert sweep_unenqueued(db, good_queue, grace_seconds=0) >= 1
    records = _receive_all(good_queue, 1)
    deliver_batch([r for r in records if json.loads(r.body)["delivery_id"] == first_id], runtime.deliverer, good_queue)
    assert [r.json()["message"]["text"] for r in receiver.wait_for(1)] == ["first"]
