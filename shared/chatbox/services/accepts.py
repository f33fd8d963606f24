"""How this process runs its durable accepts, chosen once per database dialect: `accepts_for` is the one place.

- SQLite: group commit (`chatbox.services.group_commit`). Every write already goes through the one database
  thread, so accepts queued behind each other share a transaction and a commit; the batch is written at once on
  the raw connection (`chatbox.services.sqlite_batch_accept`).
- Postgres through psycopg 3: group commit too (`chatbox.services.group_commit_postgres`): the accepts queued
  while a batch is written are the next batch, the one-statement accept per message on one connection in one
  transaction (psycopg's pipeline mode), one commit.
- any other dialect: each accept in its own transaction on the database threads (`Database.run`), committed on
  its own.

Callers (`chatbox.services.ingest`) see only `Accepts.accept`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.ports.queue import DeliveryQueue, InDatabaseQueue
from chatbox.services.group_commit import AcceptWork, GroupCommitter
from chatbox.services.group_commit_postgres import PostgresGroupCommit
from chatbox.services.inbound import accept_inbound
from chatbox.services.sqlite_batch_accept import AcceptRequest, accept_batch, table_queue_of
from chatbox.store.database import Database

if TYPE_CHECKING:
    import sqlite3


class Accepts(Protocol):
    async def accept(
        self, connection_id: str, messages: Sequence[InboundMessage], *, token: str | None = None
    ) -> list[AcceptResult]:
        """Store `messages` of one connection durably (see `accept_inbound`); their results once committed.

        Raises what `accept_inbound` raises (AuthenticationError, ConflictError) with nothing stored."""
        ...


def accepts_for(db: Database, queue: DeliveryQueue) -> Accepts:
    dialect = db.engine.dialect
    if dialect.name == "sqlite":
        return GroupCommitAccepts(db, queue)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return PostgresGroupCommit(db, queue)
    return OneByOneAccepts(db, queue)


def _accept_all(
    db: Session, queue: DeliveryQueue, connection_id: str, messages: Sequence[InboundMessage], token: str | None
) -> list[AcceptResult]:
    return [accept_inbound(db, queue, connection_id, message, inbound_token=token) for message in messages]


class OneByOneAccepts:
    """Each call in its own session on a database thread; each message committed on its own."""

    def __init__(self, db: Database, queue: DeliveryQueue) -> None:
        self.db = db
        self.queue = queue

    async def accept(
        self, connection_id: str, messages: Sequence[InboundMessage], *, token: str | None = None
    ) -> list[AcceptResult]:
        return await self.db.run(self._accept, connection_id, messages, token)

    def _accept(self, connection_id: str, messages: Sequence[InboundMessage], token: str | None) -> list[AcceptResult]:
        with self.db.session() as session:
            return _accept_all(session, self.queue, connection_id, messages, token)


@dataclass(frozen=True)
class _BatchedAccept:
    """One caller's accept in a group commit: the batch writer reads its request; called, it runs alone (the
    one-by-one fallback of a batch that failed)."""

    queue: DeliveryQueue
    request: AcceptRequest

    def __call__(self, session: Session) -> list[AcceptResult]:
        request = self.request
        return _accept_all(session, self.queue, request.connection_id, request.messages, request.token)


class GroupCommitAccepts:
    """Calls that arrive while a batch is written form the next batch, committed once (SQLite)."""

    def __init__(self, db: Database, queue: DeliveryQueue) -> None:
        self.queue = queue
        # The batch writes the local queue's rows itself; its consumer is woken once the batch is committed.
        self._table_queue = table_queue_of(queue)
        wake = queue.wake if isinstance(queue, InDatabaseQueue) else None
        self._committer = GroupCommitter(db, write_batch=self._write_batch, after_commit=wake)

    async def accept(
        self, connection_id: str, messages: Sequence[InboundMessage], *, token: str | None = None
    ) -> list[AcceptResult]:
        results: list[AcceptResult] = await self._committer.submit(
            _BatchedAccept(self.queue, AcceptRequest(connection_id, messages, token))
        )
        return results

    def _write_batch(self, raw: sqlite3.Connection, works: Sequence[AcceptWork]) -> list[tuple[bool, Any]]:
        requests = [work.request for work in works if isinstance(work, _BatchedAccept)]
        if len(requests) != len(works):
            raise TypeError("a group commit of accepts holds only accepts")
        return accept_batch(raw, requests, table_queue=self._table_queue)
