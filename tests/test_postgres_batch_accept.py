"""A group commit's batch on Postgres in one multi-row statement (`chatbox.store.postgres_batch_accept`), on a real
server: it stores and answers what the one-message statement run once per message stores and answers (the same
mixed batch through both, compared row by row), new chats shared by several messages of the batch, copies within
the batch and across two processes, edits and deletions in order, paused and archived mailboxes beside open ones,
and a message the server refuses, which fails alone once the batch runs one by one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import DBAPIError

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.normalized import AcceptResult, Attachment, ChatType, InboundMessage, Reaction
from chatbox.runtime import Runtime
from chatbox.services.group_commit_postgres import AcceptRequest, Outcome, PostgresGroupCommit
from chatbox.store.database import Database
from chatbox.store.models import Chat, Connection, Delivery, Mailbox, Message, QueueMessage, ServiceEvent
from tests.conftest import AccountKey, PostgresTestDatabase
from tests.support.api import UNKNOWN_CONNECTION, create_connection, create_mailbox

Json = dict[str, Any]
Call = tuple[Json, InboundMessage]


@pytest.fixture
def db_url(postgres_database: PostgresTestDatabase) -> str:
    """Postgres only: SQLite's batch is `tests/test_sqlite_batch_accept.py`."""
    return postgres_database.fresh()


def _text(chat: str, external_id: str, body: str | None = None, **fields: Any) -> InboundMessage:
    return InboundMessage(external_chat_id=chat, external_message_id=external_id, text=body or external_id, **fields)


def _event(chat: str, external_id: str, kind: str, target: str, **fields: Any) -> InboundMessage:
    return InboundMessage(
        external_chat_id=chat, external_message_id=external_id, event_type=kind, target_external_id=target, **fields
    )


def _batch(committer: PostgresGroupCommit, calls: Sequence[Call]) -> list[Outcome]:
    return committer.accept_batch([AcceptRequest(c["id"], [message], c["inbound_token"]) for c, message in calls])


def _results(outcomes: Sequence[Outcome]) -> list[AcceptResult]:
    results = []
    for outcome in outcomes:
        assert not isinstance(outcome, Exception), outcome
        [result] = outcome
        results.append(result)
    return results


def _commands_of(admin: Engine, external_ids: Sequence[str]) -> tuple[int, int]:
    """(transactions, statements) that wrote these messages: rows of one transaction share its `xmin`, rows of one
    statement in it also its `cmin`."""
    with admin.connect() as db:
        row = db.execute(
            text(
                "SELECT count(DISTINCT xmin::text), count(DISTINCT xmin::text || ':' || cmin::text) "
                "FROM messages WHERE external_id = ANY(:ids)"
            ),
            {"ids": list(external_ids)},
        ).one()
    return int(row[0]), int(row[1])


@pytest.fixture
def mailbox(client: TestClient, account: AccountKey) -> Json:
    return create_mailbox(client, account, webhook_url="https://agent.example.test/hook")


@pytest.fixture
def connection(client: TestClient, account: AccountKey, mailbox: Json) -> Json:
    return create_connection(client, account, mailbox["id"], platform="signal")


def test_a_batch_of_new_messages_is_one_statement_and_new_chats_shared_by_several_are_created_once(
    runtime: Runtime, connection: Json, admin: Engine
) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    calls = [
        (connection, _text("c-1", "m-1", chat_name="First", chat_type=ChatType.group)),
        (connection, _text("c-2", "m-2")),
        (connection, _text("c-1", "m-3")),
        (connection, _text("c-1", "m-4", chat_name="Renamed")),
        (connection, _text("c-2", "m-5", chat_name="Second")),
        (connection, _text("c-1", "m-6")),
    ]

    results = _results(_batch(committer, calls))

    assert [result.duplicate for result in results] == [False] * 6
    assert [result.chat_id for result in results] == ["signal:c-1", "signal:c-2", "signal:c-1"] + [
        "signal:c-1",
        "signal:c-2",
        "signal:c-1",
    ]
    assert _commands_of(admin, [f"m-{n}" for n in range(1, 7)]) == (1, 1)
    with runtime.db.session() as db:
        chats = {chat.external_id: chat for chat in db.scalars(select(Chat))}
        events = db.scalars(select(ServiceEvent).where(ServiceEvent.type == "new_chat")).all()
        queued = set(db.scalars(select(QueueMessage.deduplication_id)))
        deliveries = db.scalars(select(Delivery)).all()
        stored = {m.id: m.chat_id for m in db.scalars(select(Message))}
    assert (chats["c-1"].name, chats["c-1"].type, chats["c-1"].unread_count) == ("Renamed", "group", 4)
    assert (chats["c-2"].name, chats["c-2"].type, chats["c-2"].unread_count) == ("Second", "direct", 2)
    # One event per new chat, carrying what its first message said.
    assert sorted((event.data["chat_id"], event.data["name"]) for event in events) == [
        ("signal:c-1", "First"),
        ("signal:c-2", None),
    ]
    assert {result.message_id for result in results} == set(stored)
    assert stored[results[0].message_id] == stored[results[2].message_id] == chats["c-1"].id
    assert queued == {delivery.id for delivery in deliveries}
    assert all(delivery.status == "pending" and delivery.enqueued_at is not None for delivery in deliveries)


def test_copies_within_the_batch_and_of_earlier_batches_are_duplicates_of_the_first(
    runtime: Runtime, connection: Json, admin: Engine
) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    [earlier] = _results(_batch(committer, [(connection, _text("c-1", "old"))]))
    calls = [
        (connection, _text("c-1", "m-1")),
        (connection, _text("c-1", "old")),
        (connection, _text("c-2", "m-2")),
        (connection, _text("c-1", "m-1")),
        (connection, _text("c-9", "m-1")),  # the same message id in another chat is still a copy
        (connection, _text("c-2", "m-3")),
    ]

    results = _results(_batch(committer, calls))

    by_id = {message.external_message_id: result for (_, message), result in zip(calls, results, strict=True)}
    assert [result.duplicate for result in results] == [False, True, False, True, True, False]
    assert results[1].message_id == earlier.message_id
    assert results[3].message_id == results[4].message_id == by_id["m-1"].message_id == results[0].message_id
    # The second copy of m-1 starts a second statement, which sees the first one stored.
    assert _commands_of(admin, ["m-1", "m-2", "m-3"]) == (1, 2)
    with runtime.db.session() as db:
        assert set(db.scalars(select(Message.external_id))) == {"m-1", "m-2", "m-3", "old"}
        chats = {chat.external_id: chat.unread_count for chat in db.scalars(select(Chat))}
    assert chats == {"c-1": 2, "c-2": 2}  # no chat for a copy (c-9), no unread count for one
    assert _count_rows(runtime, Delivery) == _count_rows(runtime, QueueMessage) == 4


def _count_rows(runtime: Runtime, model: Any) -> int:
    with runtime.db.session() as db:
        return len(db.scalars(select(model)).all())


def test_edits_and_deletions_in_the_batch_apply_in_order(runtime: Runtime, connection: Json, admin: Engine) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    calls = [
        (connection, _text("c-1", "m-1", "first")),
        (connection, _event("c-1", "e-1", "edit", "m-1", text="second")),
        (connection, _text("c-1", "m-2", "to be deleted")),
        (connection, _event("c-1", "e-2", "edit", "m-1", text="third")),
        (connection, _event("c-1", "d-1", "delete", "m-2")),
        (connection, _event("c-1", "r-1", "reaction", "m-1", reaction=Reaction(emoji="👍"))),
        (connection, _event("c-1", "e-3", "edit", "m-later", text="too early")),
        (connection, _text("c-1", "m-later", "later")),
    ]

    results = _results(_batch(committer, calls))

    assert [result.duplicate for result in results] == [False] * 8
    with runtime.db.session() as db:
        stored = {message.id: message for message in db.scalars(select(Message))}
        chat = db.scalars(select(Chat)).one()
    first, first_edit, deleted, second_edit, deletion, reaction, early_edit, later = (
        stored[result.message_id] for result in results
    )
    assert (first.text, first.edited_at is not None, first.deleted_at) == ("third", True, None)
    assert (first_edit.previous_text, second_edit.previous_text) == ("first", "second")
    assert deleted.deleted_at is not None and deletion.event_type == "delete"
    assert (reaction.reaction, reaction.target_external_id) == ({"emoji": "👍", "removed": False}, "m-1")
    # An edit of a message that comes later in the batch finds nothing, as it would alone.
    assert (early_edit.previous_text, later.text, later.edited_at) == (None, "later", None)
    assert chat.unread_count == 3
    assert _count_rows(runtime, Delivery) == 8
    assert _commands_of(admin, [message.external_id or "" for message in stored.values()])[0] == 1


def test_paused_and_archived_mailboxes_and_refused_tokens_beside_open_ones_in_one_batch(
    client: TestClient, account: AccountKey, runtime: Runtime, connection: Json
) -> None:
    paused_box = create_mailbox(client, account, name="paused", webhook_url="https://agent.example.test/hook")
    paused = create_connection(client, account, paused_box["id"], platform="discord")
    closed_box = create_mailbox(client, account, name="closed", webhook_url="https://agent.example.test/hook")
    closed = create_connection(client, account, closed_box["id"], platform="slack")
    archived = create_connection(client, account, paused_box["id"], platform="telegram")
    with runtime.db.session() as db:
        db.execute(update(Mailbox).where(Mailbox.id == paused_box["id"]).values(status="paused"))
        db.execute(update(Mailbox).where(Mailbox.id == closed_box["id"]).values(status="archived"))
        db.execute(update(Connection).where(Connection.id == archived["id"]).values(status="archived"))
        db.commit()
    wrong_token = {**connection, "inbound_token": paused["inbound_token"]}
    unknown = {"id": UNKNOWN_CONNECTION, "inbound_token": connection["inbound_token"]}
    calls = [
        (connection, _text("c-1", "m-1")),
        (paused, _text("c-1", "p-1")),
        (closed, _text("c-1", "x-1")),
        (connection, _text("c-1", "m-2")),
        (wrong_token, _text("c-1", "w-1")),
        (archived, _text("c-1", "a-1")),
        (unknown, _text("c-1", "u-1")),
        (paused, _text("c-2", "p-2")),
    ]

    outcomes = _batch(PostgresGroupCommit(runtime.db, runtime.queue), calls)

    assert [type(outcome).__name__ for outcome in outcomes] == [
        "list",
        "list",
        "ConflictError",
        "list",
        "AuthenticationError",
        "AuthenticationError",
        "AuthenticationError",
        "list",
    ]
    assert isinstance(outcomes[2], ConflictError) and isinstance(outcomes[4], AuthenticationError)
    with runtime.db.session() as db:
        assert set(db.scalars(select(Message.external_id))) == {"m-1", "m-2", "p-1", "p-2"}
        statuses = {
            (row.mailbox_id == paused_box["id"], row.status, row.enqueued_at is None)
            for row in db.scalars(select(Delivery))
        }
        queued = set(db.scalars(select(QueueMessage.deduplication_id)))
        pending = set(db.scalars(select(Delivery.id).where(Delivery.status == "pending")))
        events = len(db.scalars(select(ServiceEvent)).all())
    assert statuses == {(False, "pending", False), (True, "held", True)}
    assert queued == pending and len(pending) == 2
    assert events == 3  # c-1 of the open mailbox, c-1 and c-2 of the paused one


@pytest.mark.usefixtures("refusing_poison")
def test_a_poison_message_aborts_the_statement_then_alone_gets_its_own_error_and_the_others_are_stored(
    runtime: Runtime, connection: Json
) -> None:
    calls = [(connection, _text(f"c-{n % 3}", f"m-{n}", "poison" if n == 4 else None)) for n in range(10)]
    calls.insert(6, (connection, _event("c-0", "e-0", "edit", "m-0", text="edited")))

    outcomes = _batch(PostgresGroupCommit(runtime.db, runtime.queue), calls)

    assert [isinstance(outcome, list) for outcome in outcomes] == [True] * 4 + [False] + [True] * 6
    assert isinstance(outcomes[4], DBAPIError) and "poison refused" in str(outcomes[4].orig)
    with runtime.db.session() as db:
        stored = set(db.scalars(select(Message.external_id)))
        edited = db.scalars(select(Message.text).where(Message.external_id == "m-0")).one()
        events = len(db.scalars(select(ServiceEvent)).all())
    assert stored == {f"m-{n}" for n in range(10) if n != 4} | {"e-0"}
    assert edited == "edited"
    assert events == 3
    assert _count_rows(runtime, Delivery) == _count_rows(runtime, QueueMessage) == 10


def test_copies_accepted_by_two_processes_at_once_are_stored_once_and_answered_alike(
    runtime: Runtime, connection: Json
) -> None:
    """Two processes' group commits take overlapping batches at the same moment, round after round: whichever
    stores a message first, the other answers it as a duplicate of the same id, and nothing is lost or doubled."""
    other_process = Database(runtime.db.url)
    committers = [PostgresGroupCommit(runtime.db, runtime.queue), PostgresGroupCommit(other_process, runtime.queue)]
    rounds = 12
    answers: list[list[list[AcceptResult]]] = [[], []]
    try:
        for round_number in range(rounds):
            # Each process's batch: the round's 12 messages over 4 chats, in its own order.
            calls = [(connection, _text(f"c-{n % 4}", f"r{round_number}-m{n}")) for n in range(12)]
            start = threading.Barrier(2, timeout=30)

            def run(side: int, calls: list[Call] = calls, start: threading.Barrier = start) -> list[AcceptResult]:
                ordered = calls if side == 0 else calls[::-1]
                start.wait()
                results = _results(_batch(committers[side], ordered))
                return results if side == 0 else results[::-1]

            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = [pool.submit(run, side) for side in (0, 1)]
                for side, future in enumerate(futures):
                    answers[side].append(future.result(timeout=60))
    finally:
        other_process.dispose()

    for first, second in zip(answers[0], answers[1], strict=True):
        for one, other in zip(first, second, strict=True):
            assert one.message_id == other.message_id
            assert [one.duplicate, other.duplicate].count(False) == 1
    with runtime.db.session() as db:
        assert len(db.scalars(select(Message.id)).all()) == rounds * 12
        assert len(db.scalars(select(Delivery.id)).all()) == rounds * 12
        events = len(db.scalars(select(ServiceEvent)).all())
        unread = sum(db.scalars(select(Chat.unread_count)))
    assert events == 4
    assert unread == rounds * 12


def _mixed_batch(open_connection: Json, paused_connection: Json) -> list[Call]:
    """Every kind of row at once: new and existing chats, the focal chat, names and types given or not, copies,
    edits, deletions and reactions (of earlier messages and of this batch's), a paused mailbox, a refused token."""
    c, p = open_connection, paused_connection
    return [
        (c, _text("focal", "f-1")),
        (c, _text("old", "o-1")),
        (c, _text("new", "n-1", chat_name="New", chat_type=ChatType.group)),
        (p, _text("held", "p-1", chat_name="Held")),
        (c, _text("new", "n-2")),
        (c, _text("old", "o-2", chat_type=ChatType.direct)),
        (c, _text("new", "n-1")),
        (c, _text("old", "o-0")),
        (c, _event("old", "e-1", "edit", "o-1", text="o-1 edited")),
        (c, _text("typed", "t-1", chat_type=ChatType.direct, chat_name="A")),
        (c, _text("new", "n-3", chat_name="Newer")),
        (c, _event("old", "d-1", "delete", "o-0")),
        (p, _text("held", "p-2")),
        (c, _event("new", "r-1", "reaction", "n-1", reaction=Reaction(emoji="ok"))),
        (c, _text("typed", "t-2", chat_type=ChatType.group)),
        ({**c, "inbound_token": p["inbound_token"]}, _text("old", "w-1")),
        (c, _event("focal", "e-2", "edit", "f-0", text="f-0 edited")),
        (c, _text("focal", "f-2")),
        (
            c,
            InboundMessage(
                external_chat_id="new",
                external_message_id="a-1",
                text='quotes " \\ back\\slash, ünïcode 🙂 and\nlines',
                sender_id="u-1",
                sender_name="Zoë",
                sent_at=datetime(2026, 11, 30, 21, 0, 0, 123456, tzinfo=UTC),
                reply_to_external_id="n-1",
                attachments=[Attachment(kind="image", url="https://files.example.test/a.png", size=12)],
            ),
        ),
    ]


def _answers(calls: Sequence[Call], outcomes: Sequence[Outcome], earlier: dict[str, str]) -> list[Any]:
    """The outcomes with ids replaced by what they name: an error's type, or (duplicate, the external id stored)."""
    external_of = dict(earlier)
    for (_, message), outcome in zip(calls, outcomes, strict=True):
        if isinstance(outcome, list) and not outcome[0].duplicate:
            external_of[outcome[0].message_id] = message.external_message_id
    return [
        type(outcome).__name__
        if isinstance(outcome, Exception)
        else (outcome[0].duplicate, outcome[0].chat_id, external_of[outcome[0].message_id])
        for outcome in outcomes
    ]


def _stored(runtime: Runtime, mailbox_ids: Sequence[str]) -> dict[str, Any]:
    """The mailboxes' rows without ids or times, by external id."""
    with runtime.db.session() as db:
        chats = db.scalars(select(Chat).where(Chat.mailbox_id.in_(mailbox_ids))).all()
        chat_of = {chat.id: chat.external_id for chat in chats}
        messages = db.scalars(select(Message).where(Message.chat_id.in_(chat_of))).all()
        external_of = {message.id: message.external_id for message in messages}
        deliveries = db.scalars(select(Delivery).where(Delivery.mailbox_id.in_(mailbox_ids))).all()
        queued = set(db.scalars(select(QueueMessage.deduplication_id)))
        events = db.scalars(select(ServiceEvent).where(ServiceEvent.mailbox_id.in_(mailbox_ids))).all()
        return {
            "chats": sorted((c.external_id, c.name, c.type, c.unread_count, c.muted) for c in chats),
            "messages": sorted(
                (
                    m.external_id,
                    chat_of[m.chat_id],
                    m.text,
                    m.previous_text,
                    m.edited_at is not None,
                    m.deleted_at is not None,
                    m.event_type,
                    m.target_external_id,
                    m.sender_id,
                    m.sender_name,
                    m.reply_to_external_id,
                    m.sent_at,
                    str(m.reaction),
                    str(m.attachments),
                )
                for m in messages
            ),
            "deliveries": sorted(
                (external_of[d.message_id], chat_of[d.chat_id], d.status, d.enqueued_at is not None, d.id in queued)
                for d in deliveries
            ),
            "events": sorted((e.type, e.data["chat_id"], e.data["name"]) for e in events),
        }


def test_the_multi_row_statement_stores_and_answers_what_the_one_message_statement_does(
    client: TestClient, account: AccountKey, runtime: Runtime
) -> None:
    seen = []
    for set_wise in (True, False):
        label = "rows" if set_wise else "one"
        box = create_mailbox(client, account, name=f"open {label}", webhook_url="https://agent.example.test/hook")
        held_box = create_mailbox(client, account, name=f"held {label}", webhook_url="https://agent.example.test/hook")
        open_connection = create_connection(client, account, box["id"], platform="signal")
        paused_connection = create_connection(client, account, held_box["id"], platform="discord")
        committer = PostgresGroupCommit(runtime.db, runtime.queue, set_wise=set_wise)
        before = [
            (open_connection, _text("old", "o-0", chat_name="Old", chat_type=ChatType.group)),
            (open_connection, _text("focal", "f-0")),
        ]
        earlier = {
            result.message_id: message.external_message_id
            for (_, message), result in zip(before, _results(_batch(committer, before)), strict=True)
        }
        with runtime.db.session() as db:
            focal = db.scalars(select(Chat.id).where(Chat.mailbox_id == box["id"], Chat.external_id == "focal")).one()
            db.execute(update(Mailbox).where(Mailbox.id == box["id"]).values(focal_chat_id=focal))
            db.execute(update(Mailbox).where(Mailbox.id == held_box["id"]).values(status="paused"))
            db.commit()
        calls = _mixed_batch(open_connection, paused_connection)

        outcomes = _batch(committer, calls)

        seen.append((_answers(calls, outcomes, earlier), _stored(runtime, [box["id"], held_box["id"]])))

    assert seen[0][0] == seen[1][0]
    assert seen[0][1] == seen[1][1]
    assert "AuthenticationError" in seen[0][0]
    assert ("focal", None, "direct", 1, False) in seen[0][1]["chats"]  # the focal chat's count stayed
    [stored] = [message for message in seen[0][1]["messages"] if message[0] == "a-1"]
    assert stored[2] == 'quotes " \\ back\\slash, ünïcode 🙂 and\nlines'
    assert stored[-3:-1] == (datetime(2026, 11, 30, 21, 0, 0, 123456, tzinfo=UTC), "None")
    assert "https://files.example.test/a.png" in stored[-1]
