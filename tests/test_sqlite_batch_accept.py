"""One group commit's batch on SQLite (`chatbox.services.sqlite_batch_accept`) answers and stores what its
accepts would alone: new chats and copies (within the batch and of earlier batches), edits and deletions of
messages of the same batch, a paused mailbox, a connection archived while its accepts waited for the batch.

The accepts are queued while the database thread is held, so the group commit takes them as one batch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.normalized import AcceptResult, InboundMessage, Reaction
from chatbox.runtime import Runtime
from chatbox.store.models import Chat, Connection, Delivery, Mailbox, Message, QueueMessage, ServiceEvent
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_mailbox

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

Call = tuple[dict[str, Any], InboundMessage]


def _text(chat: str, external_id: str, text: str, **fields: Any) -> InboundMessage:
    return InboundMessage(external_chat_id=chat, external_message_id=external_id, text=text, **fields)


async def _accept_in_one_batch(runtime: Runtime, calls: list[Call]) -> list[Any]:
    release = threading.Event()
    holding = runtime.db.executor.submit(release.wait, 30)
    try:
        tasks = [
            asyncio.ensure_future(runtime.ingest.accept_posted(c["id"], message, token=c["inbound_token"]))
            for c, message in calls
        ]
        # Each accept runs up to its wait for the batch: queued, all of them, behind the held thread.
        await asyncio.sleep(0)
    finally:
        release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    holding.result(timeout=30)
    return results


def _one_batch(runtime: Runtime, calls: list[Call]) -> list[Any]:
    return asyncio.run(_accept_in_one_batch(runtime, calls))


def _count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.db.session() as db:
        found: int = db.scalar(select(func.count()).select_from(model).where(*where)) or 0
    return found


def _message(runtime: Runtime, message_id: str) -> Message:
    with runtime.db.session() as db:
        found = db.get(Message, message_id)
        assert found is not None
        return found


@pytest.fixture
def mailbox(client: TestClient, account: AccountKey) -> dict[str, Any]:
    return create_mailbox(client, account, webhook_url="https://agent.example.test/hook")


@pytest.fixture
def connection(client: TestClient, account: AccountKey, mailbox: dict[str, Any]) -> dict[str, Any]:
    return create_connection(client, account, mailbox["id"], platform="signal")


def test_a_batch_of_new_chats_and_copies_stores_each_message_once(runtime: Runtime, connection: dict[str, Any]) -> None:
    [earlier] = _one_batch(runtime, [(connection, _text("c-1", "m-0", "before"))])
    calls = [
        (connection, _text("c-1", "m-0", "copy of an earlier batch's")),
        (connection, _text("c-1", "m-1", "one", chat_name="Old friends")),
        (connection, _text("c-2", "m-2", "two", chat_name="New friends", chat_type="group")),
        (connection, _text("c-2", "m-2", "copy within the batch")),
        (connection, _text("c-3", "m-3", "three")),
        (connection, _text("c-2", "m-4", "four")),
    ]

    results = _one_batch(runtime, calls)

    assert all(isinstance(result, AcceptResult) for result in results), results
    assert [result.duplicate for result in results] == [True, False, False, True, False, False]
    assert results[0].message_id == earlier.message_id
    assert results[3].message_id == results[2].message_id
    assert [result.chat_id for result in results] == [f"signal:{c}" for c in ("c-1", "c-1", "c-2", "c-2", "c-3", "c-2")]
    assert _count(runtime, Message) == 5
    assert _count(runtime, Delivery, Delivery.status == "pending", Delivery.enqueued_at.is_not(None)) == 5
    assert _count(runtime, QueueMessage) == 5
    with runtime.db.session() as db:
        chats = {chat.external_id: chat for chat in db.scalars(select(Chat))}
        stored = {m.external_id: m for m in db.scalars(select(Message))}
        opened = sorted(event.data["chat_id"] for event in db.scalars(select(ServiceEvent)))
    assert {name: (chat.name, chat.type, chat.unread_count) for name, chat in chats.items()} == {
        "c-1": ("Old friends", "direct", 2),
        "c-2": ("New friends", "group", 2),
        "c-3": (None, "direct", 1),
    }
    assert stored["m-2"].text == "two"
    assert stored["m-2"].chat_id == stored["m-4"].chat_id == chats["c-2"].id
    # One batch, one commit: its messages were received together.
    assert len({stored[key].received_at for key in ("m-1", "m-2", "m-3", "m-4")}) == 1
    assert opened == ["signal:c-1", "signal:c-2", "signal:c-3"]


def test_edits_and_deletions_of_messages_of_the_same_batch_apply_in_order(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    calls = [
        (connection, _text("c-1", "m-1", "first")),
        (connection, _text("c-1", "e-1", "second", event_type="edit", target_external_id="m-1")),
        (connection, _text("c-1", "m-2", "to be deleted")),
        (connection, _text("c-1", "e-2", "third", event_type="edit", target_external_id="m-1")),
        (
            connection,
            InboundMessage(
                external_chat_id="c-1", external_message_id="d-1", event_type="delete", target_external_id="m-2"
            ),
        ),
        (
            connection,
            InboundMessage(
                external_chat_id="c-1",
                external_message_id="r-1",
                event_type="reaction",
                target_external_id="m-1",
                reaction=Reaction(emoji="👍"),
            ),
        ),
    ]

    results = _one_batch(runtime, calls)

    assert all(isinstance(result, AcceptResult) and not result.duplicate for result in results), results
    first, first_edit, deleted, second_edit, deletion, reaction = (_message(runtime, r.message_id) for r in results)
    assert (first.text, first.edited_at is not None, first.deleted_at) == ("third", True, None)
    assert (first_edit.previous_text, second_edit.previous_text) == ("first", "second")
    assert deleted.deleted_at is not None and deletion.event_type == "delete"
    assert (reaction.reaction, reaction.target_external_id) == ({"emoji": "👍", "removed": False}, "m-1")
    with runtime.db.session() as db:
        chat = db.scalars(select(Chat)).one()
    # Only messages count as unread; edits, deletions and reactions do not.
    assert chat.unread_count == 2
    assert _count(runtime, Delivery) == 6


def test_a_paused_mailbox_holds_its_messages_in_a_batch_beside_an_open_one(
    client: TestClient, account: AccountKey, runtime: Runtime, connection: dict[str, Any]
) -> None:
    paused_box = create_mailbox(client, account, name="paused", webhook_url="https://agent.example.test/hook")
    paused = create_connection(client, account, paused_box["id"], platform="discord")
    with runtime.db.session() as db:
        db.execute(update(Mailbox).where(Mailbox.id == paused_box["id"]).values(status="paused"))
        db.commit()
    calls = [(paused if n % 2 else connection, _text(f"c-{n % 3}", f"m-{n}", f"text {n}")) for n in range(12)]

    results = _one_batch(runtime, calls)

    assert all(isinstance(result, AcceptResult) and not result.duplicate for result in results), results
    held = (Delivery.mailbox_id == paused_box["id"], Delivery.status == "held", Delivery.enqueued_at.is_(None))
    assert _count(runtime, Delivery, *held) == 6
    assert _count(runtime, Delivery, Delivery.mailbox_id == connection["mailbox_id"], Delivery.status == "pending") == 6
    assert _count(runtime, QueueMessage) == 6
    with runtime.db.session() as db:
        queued = set(db.scalars(select(QueueMessage.deduplication_id)))
        pending = set(db.scalars(select(Delivery.id).where(Delivery.status == "pending")))
    assert queued == pending


def test_a_connection_archived_while_its_accepts_wait_is_refused_without_failing_the_others(
    client: TestClient, account: AccountKey, runtime: Runtime, connection: dict[str, Any]
) -> None:
    other_box = create_mailbox(client, account, name="other", webhook_url="https://agent.example.test/hook")
    archived = create_connection(client, account, other_box["id"], platform="discord")
    closed_box = create_mailbox(client, account, name="closed", webhook_url="https://agent.example.test/hook")
    closed = create_connection(client, account, closed_box["id"], platform="slack")
    with runtime.db.session() as db:
        db.execute(update(Connection).where(Connection.id == archived["id"]).values(status="archived"))
        db.execute(update(Mailbox).where(Mailbox.id == closed_box["id"]).values(status="archived"))
        db.commit()
    wrong_token = {**connection, "inbound_token": archived["inbound_token"]}
    calls = [
        (connection, _text("c-1", "m-1", "kept")),
        (archived, _text("c-1", "m-2", "refused")),
        (closed, _text("c-1", "m-3", "refused")),
        (wrong_token, _text("c-1", "m-4", "refused")),
        (connection, _text("c-1", "m-5", "kept")),
    ]

    results = _one_batch(runtime, calls)

    assert isinstance(results[0], AcceptResult) and isinstance(results[4], AcceptResult)
    assert isinstance(results[1], AuthenticationError)
    assert isinstance(results[2], ConflictError)
    assert isinstance(results[3], AuthenticationError)
    with runtime.db.session() as db:
        assert set(db.scalars(select(Message.external_id))) == {"m-1", "m-5"}
    assert _count(runtime, Delivery) == 2
    assert _count(runtime, ServiceEvent) == 1


def test_a_batch_that_fails_is_accepted_one_by_one_so_one_bad_message_fails_alone(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    # The database refuses one message (a trigger): the batch's insert fails, and each accept then runs alone.
    with runtime.db.session() as db:
        db.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON messages WHEN NEW.text = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
            )
        )
        db.commit()
    calls = [(connection, _text("c-1", f"m-{n}", "poison" if n == 3 else f"text {n}")) for n in range(1, 6)]

    results = _one_batch(runtime, calls)

    assert [isinstance(result, AcceptResult) for result in results] == [True, True, False, True, True], results
    assert isinstance(results[2], Exception)
    with runtime.db.session() as db:
        assert set(db.scalars(select(Message.external_id))) == {"m-1", "m-2", "m-4", "m-5"}
    assert _count(runtime, Delivery) == 4
    assert _count(runtime, QueueMessage) == 4
    assert _count(runtime, ServiceEvent) == 1


def test_callers_on_two_event_loops_in_one_batch_are_each_answered_on_their_own_loop(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    release = threading.Event()
    queued = threading.Barrier(3, timeout=30)
    answers: dict[str, list[Any]] = {}

    def caller(name: str) -> None:
        async def accept_three() -> list[Any]:
            tasks = [
                asyncio.ensure_future(
                    runtime.ingest.accept_posted(
                        connection["id"], _text("c-1", f"{name}-{n}", "hi"), token=connection["inbound_token"]
                    )
                )
                for n in range(3)
            ]
            await asyncio.sleep(0)
            queued.wait()
            return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

        answers[name] = asyncio.run(accept_three())

    holding = runtime.db.executor.submit(release.wait, 30)
    threads = [threading.Thread(target=caller, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    try:
        queued.wait()
    finally:
        release.set()
    for thread in threads:
        thread.join(timeout=30)
    holding.result(timeout=30)

    assert sorted(answers) == ["left", "right"]
    for results in answers.values():
        assert all(isinstance(result, AcceptResult) and not result.duplicate for result in results), results
    with runtime.db.session() as db:
        received = set(db.scalars(select(Message.received_at)))
    assert _count(runtime, Message) == 6
    assert len(received) == 1  # one batch
