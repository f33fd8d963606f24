"""Group commit on Postgres (`chatbox.services.group_commit_postgres`), on a real server: accepts made together
share one transaction, a copy within a batch is one message and duplicates, and whatever aborts a batch (a copy
stored meanwhile by another process, a message the server refuses, a dropped connection) leaves every other accept
stored and gives the culprit its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.ports.queue import DeliveryJob, QueueError, QueueRecord
from chatbox.runtime import Runtime
from chatbox.services.group_commit_postgres import AcceptRequest, Outcome, PostgresGroupCommit
from chatbox.services.inbound_postgres import accept_input
from chatbox.store.database import Database
from chatbox.store.models import Delivery, Message, QueueMessage
from chatbox.store.postgres_accept import accept_on_postgres
from tests.conftest import AccountKey, PostgresTestDatabase
from tests.support.api import create_connection, create_mailbox
from tests.support.pipeline import eventually


@pytest.fixture
def db_url(postgres_database: PostgresTestDatabase) -> str:
    """Postgres only: this is its group commit (SQLite's is `tests/test_group_commit.py`)."""
    return postgres_database.fresh()


@pytest.fixture
def connection(client: TestClient, account: AccountKey) -> dict[str, Any]:
    mailbox = create_mailbox(client, account, webhook_url="https://agent.example.test/hook")
    return create_connection(client, account, mailbox["id"], platform="signal")


def _message(external_id: str, chat: str = "c-1", text: str | None = None) -> InboundMessage:
    return InboundMessage(external_chat_id=chat, external_message_id=external_id, text=text or f"text of {external_id}")


def _requests(connection: dict[str, Any], messages: Sequence[InboundMessage]) -> list[AcceptRequest]:
    return [AcceptRequest(connection["id"], [message], connection["inbound_token"]) for message in messages]


def _transactions_of(admin: Engine, external_ids: Sequence[str]) -> int:
    """How many transactions wrote these messages (rows written by one transaction share its `xmin`)."""
    with admin.connect() as db:
        found: int = db.execute(
            text("SELECT count(DISTINCT xmin::text) FROM messages WHERE external_id = ANY(:ids)"),
            {"ids": list(external_ids)},
        ).scalar_one()
    return found


def _count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.db.session() as db:
        found: int = db.scalar(select(func.count()).select_from(model).where(*where)) or 0
    return found


def _results(outcomes: list[Outcome]) -> list[AcceptResult]:
    results = []
    for outcome in outcomes:
        assert not isinstance(outcome, Exception), outcome
        [result] = outcome
        results.append(result)
    return results


def test_concurrent_accepts_share_a_transaction_and_are_each_stored(
    runtime: Runtime, connection: dict[str, Any], admin: Engine
) -> None:
    external_ids = [f"m-{n}" for n in range(40)]
    posts = [_message(external_id, chat=f"c-{n % 5}") for n, external_id in enumerate(external_ids)]

    async def together() -> list[Any]:
        token = connection["inbound_token"]
        return await asyncio.gather(
            *(runtime.ingest.accept_posted(connection["id"], post, token=token) for post in posts),
            return_exceptions=True,
        )

    results = asyncio.run(together())

    assert all(isinstance(result, AcceptResult) and not result.duplicate for result in results), results
    assert _count(runtime, Message) == 40
    assert _count(runtime, Delivery) == 40
    assert _count(runtime, QueueMessage) == 40
    # Accepts that arrived while a batch was written were committed together.
    assert _transactions_of(admin, external_ids) < 40


def test_copies_within_one_batch_are_one_message_and_duplicates(runtime: Runtime, connection: dict[str, Any]) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    posts = [_message("m-1"), _message("m-2"), _message("m-1"), _message("m-1", chat="c-2")]

    results = _results(committer.accept_batch(_requests(connection, posts)))

    assert [result.duplicate for result in results] == [False, False, True, True]
    assert results[2].message_id == results[3].message_id == results[0].message_id
    assert _count(runtime, Message) == 2
    assert _count(runtime, Delivery) == 2
    assert _count(runtime, QueueMessage) == 2


def test_a_copy_stored_meanwhile_by_another_process_is_a_duplicate_and_the_batch_beside_it_is_stored(
    runtime: Runtime, connection: dict[str, Any], admin: Engine
) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    _results(committer.accept_batch(_requests(connection, [_message("m-0", chat="a")])))
    other_process = Database(runtime.db.url)
    try:
        with other_process.engine.connect() as other:
            # Another process stores m-2 and has not committed yet: it holds chat a's row.
            copy = accept_input(runtime.queue, connection["id"], _message("m-2", chat="a"), inbound_token=None)
            assert accept_on_postgres(other, copy) is not None
            posts = [_message("m-1", chat="b"), _message("m-2", chat="a"), _message("m-3", chat="b")]
            with ThreadPoolExecutor(max_workers=1) as pool:
                batch = pool.submit(committer.accept_batch, _requests(connection, posts))
                eventually(lambda: _waiting_on_a_lock(admin), timeout=20)
                other.commit()
                results = _results(batch.result(timeout=60))
    finally:
        other_process.dispose()

    assert [result.duplicate for result in results] == [False, True, False]
    assert results[1].message_id == copy.message_id
    assert _count(runtime, Message) == 4
    assert _count(runtime, Delivery) == 4
    # The batch was aborted by the copy's unique key and its accepts ran again one by one.
    assert _transactions_of(admin, ["m-1", "m-3"]) == 2


def _waiting_on_a_lock(admin: Engine) -> bool:
    with admin.connect() as db:
        waiting: int = db.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return waiting > 0


@pytest.mark.usefixtures("refusing_poison")
def test_a_message_the_server_refuses_gets_its_own_error_and_the_others_are_stored(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    posts = [_message("m-1"), _message("m-2", text="poison"), _message("m-3", chat="c-2")]

    outcomes = committer.accept_batch(_requests(connection, posts))

    assert isinstance(outcomes[1], DBAPIError)
    assert "poison refused" in str(outcomes[1].orig)
    assert [outcome[0].duplicate for outcome in (outcomes[0], outcomes[2]) if isinstance(outcome, list)] == [
        False,
        False,
    ]
    with runtime.db.session() as db:
        stored = db.scalars(select(Message.external_id).order_by(Message.external_id)).all()
    assert stored == ["m-1", "m-3"]
    assert _count(runtime, Delivery) == 2
    assert _count(runtime, QueueMessage) == 2


def test_a_batch_after_the_server_dropped_its_connections_is_stored(
    runtime: Runtime, connection: dict[str, Any], admin: Engine
) -> None:
    committer = PostgresGroupCommit(runtime.db, runtime.queue)
    _results(committer.accept_batch(_requests(connection, [_message("before")])))
    with admin.connect() as db:
        dropped = db.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert dropped >= 1  # the pool held the first batch's connection

    results = _results(committer.accept_batch(_requests(connection, [_message("after-1"), _message("after-2")])))

    assert [result.duplicate for result in results] == [False, False]
    assert _count(runtime, Message) == 3
    # The next batch runs on a healthy connection again, in one transaction.
    _results(committer.accept_batch(_requests(connection, [_message("later-1"), _message("later-2")])))
    assert _transactions_of(admin, ["later-1", "later-2"]) == 1


class ExternalQueue:
    """A queue outside the database (the SQS adapter's shape): nothing staged, jobs sent after the commit."""

    def __init__(self, runtime: Runtime, *, reachable: bool = True) -> None:
        self.runtime = runtime
        self.reachable = reachable
        self.sent: list[DeliveryJob] = []
        self.committed_when_sent: list[bool] = []

    def stage(self, db: Session, jobs: Sequence[DeliveryJob]) -> bool:  # noqa: ARG002 - nothing to stage
        return False

    def send(self, jobs: Sequence[DeliveryJob]) -> None:
        if not self.reachable:
            raise QueueError("queue unreachable")
        ids = [job.delivery_id for job in jobs]
        self.committed_when_sent.append(_count(self.runtime, Delivery, Delivery.id.in_(ids)) == len(ids))
        self.sent.extend(jobs)

    def retry_later(self, record: QueueRecord, delay_seconds: float) -> None:  # noqa: ARG002 - never called
        raise AssertionError("the accept path never retries a record")

    def dead_letter(self, record: QueueRecord) -> None:  # noqa: ARG002 - never called
        raise AssertionError("the accept path never dead-letters a record")


def test_an_external_queue_is_sent_the_batch_after_its_commit(runtime: Runtime, connection: dict[str, Any]) -> None:
    queue = ExternalQueue(runtime)
    committer = PostgresGroupCommit(runtime.db, queue)
    posts = [_message("m-1"), _message("m-2", chat="c-2"), _message("m-1")]

    _results(committer.accept_batch(_requests(connection, posts)))

    assert queue.committed_when_sent == [True]
    assert len(queue.sent) == 2
    assert _count(runtime, Delivery, Delivery.enqueued_at.is_not(None)) == 2
    assert _count(runtime, QueueMessage) == 0


def test_a_failed_send_to_an_external_queue_leaves_the_deliveries_to_the_sweeper(
    runtime: Runtime, connection: dict[str, Any]
) -> None:
    committer = PostgresGroupCommit(runtime.db, ExternalQueue(runtime, reachable=False))

    results = _results(committer.accept_batch(_requests(connection, [_message("m-1"), _message("m-2")])))

    assert [result.duplicate for result in results] == [False, False]
    assert _count(runtime, Delivery, Delivery.enqueued_at.is_(None)) == 2
