"""Waiting behind a failing message of the same chat never costs a delivery its own attempts, and a
database outage neither stops the local worker nor answers a 500."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.adapters.local_queue import LocalQueue
from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.schemas import DeliveryStatus
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key
from chatbox.local.consumer import LocalConsumer
from chatbox.runtime import Runtime
from chatbox.store.database import Database
from chatbox.store.models import Delivery
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_mailbox
from tests.support.pipeline import eventually, post_inbound, running_consumer
from tests.support.receiver import Received, Reply, WebhookReceiver, running_receiver

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/chatbox"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # The production queue defaults (visibility 60 s, webhook timeout 15 s: a worker takes three of a
    # chat's records at once), six attempts, a tiny backoff.
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_private_webhooks=True,
        delivery_retry_base_seconds=0.001,
        delivery_max_attempts=6,
    )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _deliveries(runtime: Runtime) -> list[Delivery]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Delivery).order_by(Delivery.id)))


def test_messages_behind_a_failing_one_get_their_own_attempts(
    client: TestClient, runtime: Runtime, account: AccountKey, receiver: WebhookReceiver
) -> None:
    mailbox = create_mailbox(client, account, webhook_url=receiver.url)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    posts: Counter[str] = Counter()

    def respond(received: Received) -> Reply:
        text = received.json()["message"]["text"]
        posts[text] += 1
        return Reply(status=500) if text == "A" or (text == "B" and posts[text] <= 3) else Reply()

    receiver.respond = respond
    for text in "ABC":
        post_inbound(client, connection, f"m-{text}", text)
    finished = {DeliveryStatus.delivered.value, DeliveryStatus.dead.value}
    with running_consumer(runtime):
        eventually(lambda: all(d.status in finished for d in _deliveries(runtime)), timeout=60)

    a, b, c = _deliveries(runtime)
    assert (a.status, posts["A"]) == (DeliveryStatus.dead.value, 6)
    assert (b.status, posts["B"]) == (DeliveryStatus.delivered.value, 4)
    assert (c.status, posts["C"]) == (DeliveryStatus.delivered.value, 1)
    assert c.deferrals > 6  # it waited out all of A's and B's failures without counting them as its own


def test_the_local_worker_keeps_running_while_the_database_is_unreachable(tmp_path: Path) -> None:
    database = Database(UNREACHABLE_POSTGRES)
    queue = LocalQueue(database, wake_path=None)
    settings = Settings(home=tmp_path, db_url=UNREACHABLE_POSTGRES, vault_key=generate_key())
    runtime = build_runtime(settings)
    consumer = LocalConsumer(queue, runtime.deliverer, poll_interval=0.01, sweep_every=0.05)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # several receive rounds fail meanwhile
            assert thread.is_alive(), "the worker stopped on a database error"
            time.sleep(0.05)
    finally:
        consumer.stop()
        thread.join(timeout=10)
        runtime.close()
        database.dispose()
    assert not thread.is_alive()


def test_an_unreachable_database_is_a_503_to_retry_not_a_500(tmp_path: Path, account: AccountKey) -> None:
    settings = Settings(home=tmp_path, db_url=UNREACHABLE_POSTGRES, vault_key=generate_key())
    runtime = build_runtime(settings)
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            response = client.get("/v1/mailboxes", headers=account.headers)
    finally:
        runtime.close()

    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
