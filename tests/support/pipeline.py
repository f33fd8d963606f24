"""Pipeline test helpers: a consumer thread over the local queue, inbound posts, bounded polling, a database
that is down."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from chatbox.adapters.local_queue import LocalQueue
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.local.consumer import LocalConsumer
from chatbox.runtime import Runtime
from chatbox.services.delivery_attempt import Deliverer
from chatbox.services.inbound import accept_inbound
from chatbox.store.database import Database
from tests.support.ports import reserved_port

T = TypeVar("T")


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@contextmanager
def running_consumer(runtime: Runtime, deliverer: Deliverer | None = None) -> Iterator[LocalConsumer]:
    assert isinstance(runtime.queue, LocalQueue)
    consumer = LocalConsumer(
        runtime.queue,
        deliverer or runtime.deliverer,
        webhook_timeout=runtime.settings.delivery_timeout_seconds,
        poll_interval=0.02,
        sweep_every=0.2,
        sweep_grace=0.0,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "consumer did not stop"


@contextmanager
def unreachable_database() -> Iterator[Database]:
    """A real Database whose server is down (nothing listens on its port): every session raises on first use."""
    # The port stays reserved (bound, not listening) for the block, so no server can appear on it.
    with reserved_port() as port:
        database = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/chatbox")
        try:
            yield database
        finally:
            database.dispose()


def eventually(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `check` until it returns a truthy value (bounded); returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def accept_directly(
    runtime: Runtime, connection: dict[str, Any], external_message_id: str, text: str = "hello", **fields: Any
) -> AcceptResult:
    """Accept one inbound message through the core, as a webhook-mode platform's ingest does once it verified a
    push: the inbound token of a Telegram or Slack connection does not open the generic route (`post_inbound`)."""
    message = InboundMessage.model_validate(
        {"external_chat_id": "chat-1", "external_message_id": external_message_id, "text": text, **fields}
    )
    with runtime.db.session() as db:
        return accept_inbound(db, runtime.queue, connection["id"], message)


def post_inbound(
    client: TestClient, connection: dict[str, Any], external_message_id: str, text: str = "hello", **fields: Any
) -> dict[str, Any]:
    body = {"external_chat_id": "chat-1", "external_message_id": external_message_id, "text": text, **fields}
    response = client.post(
        f"/v1/connections/{connection['id']}/messages",
        json=body,
        headers={"Authorization": f"Bearer {connection['inbound_token']}"},
    )
    assert response.status_code == 202, response.text
    result: dict[str, Any] = response.json()
    return result
