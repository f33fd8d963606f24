"""Accepts that arrive together share a commit (on SQLite) and each is answered as it would be alone: every
accepted message stored with its delivery and queue row, copies answered as duplicates, an archived mailbox
refused without failing the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from chatbox.domain.errors import ConflictError
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.runtime import Runtime
from chatbox.store.models import Delivery, Mailbox, Message, QueueMessage, ServiceEvent
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox
from tests.support.pipeline import eventually


def _message(number: int) -> InboundMessage:
    return InboundMessage(external_chat_id=f"c-{number % 5}", external_message_id=f"m-{number}", text=f"hi {number}")


async def _accept_together(runtime: Runtime, connection: dict[str, Any], messages: list[InboundMessage]) -> list[Any]:
    ingest = runtime.ingest
    token = connection["inbound_token"]
    return await asyncio.gather(
        *(ingest.accept_posted(connection["id"], message, token=token) for message in messages),
        return_exceptions=True,
    )


def _count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.db.session() as db:
        found: int = db.scalar(select(func.count()).select_from(model).where(*where)) or 0
    return found


def test_concurrent_accepts_are_each_stored_with_their_delivery(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    # 60 accepts at once, 20 of them copies of messages in the same wave.
    messages = [_message(number) for number in range(40)] + [_message(number) for number in range(0, 40, 2)]

    results = asyncio.run(_accept_together(runtime, connection, messages))

    assert [r for r in results if not isinstance(r, AcceptResult)] == []
    assert sum(1 for result in results if not result.duplicate) == 40
    first_ids = {m.external_message_id: r.message_id for m, r in zip(messages, results, strict=True) if not r.duplicate}
    for message, result in zip(messages, results, strict=True):
        assert result.message_id == first_ids[message.external_message_id]
    assert _count(runtime, Message) == 40
    assert _count(runtime, Delivery) == 40
    if runtime.db.engine.dialect.name == "sqlite":
        assert _count(runtime, QueueMessage) == 40
    # One new_chat event per chat, in the outbox with the message that opened it.
    assert _count(runtime, ServiceEvent, ServiceEvent.type == "new_chat") == 5


def test_accepts_made_together_for_a_paused_mailbox_are_held_and_not_queued(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    with runtime.db.session() as db:
        db.execute(update(Mailbox).where(Mailbox.id == mailbox["id"]).values(status="paused"))
        db.commit()

    results = asyncio.run(_accept_together(runtime, connection, [_message(number) for number in range(20)]))

    assert [r for r in results if not isinstance(r, AcceptResult)] == []
    assert _count(runtime, Delivery, Delivery.status == "held", Delivery.enqueued_at.is_(None)) == 20
    assert _count(runtime, QueueMessage) == 0


def test_an_archived_mailbox_is_refused_without_failing_the_accepts_beside_it(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    open_box = create_mailbox(client, account, name="open", webhook_url="https://agent.example.test/hook")
    closed_box = create_mailbox(client, account, name="closed", webhook_url="https://agent.example.test/hook")
    open_connection = create_connection(client, account, open_box["id"], platform="signal")
    closed_connection = create_connection(client, account, closed_box["id"], platform="discord")
    assert client.delete(f"/v1/mailboxes/{closed_box['id']}", headers=account.headers).status_code in (200, 204)

    async def both() -> tuple[list[Any], list[Any]]:
        return await asyncio.gather(
            _accept_together(runtime, open_connection, [_message(number) for number in range(10)]),
            _accept_together(runtime, closed_connection, [_message(number) for number in range(10)]),
        )

    accepted, refused = asyncio.run(both())

    assert all(isinstance(result, AcceptResult) and not result.duplicate for result in accepted), accepted
    assert all(isinstance(result, ConflictError) for result in refused), refused
    assert _count(runtime, Message) == 10
    assert _count(runtime, Delivery) == 10


def test_a_batch_on_sqlite_is_checkpointed_by_the_checkpointer_thread_not_its_commit(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    checkpointer = runtime.db.checkpointer
    if checkpointer is None:
        pytest.skip("Postgres has no write-ahead log of SQLite's to checkpoint")
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    before = checkpointer.checkpoints

    results = asyncio.run(_accept_together(runtime, connection, [_message(number) for number in range(8)]))

    assert [r for r in results if not isinstance(r, AcceptResult)] == []
    eventually(lambda: checkpointer.checkpoints > before)
