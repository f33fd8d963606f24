"""How this process runs its durable accepts, chosen once per database dialect: `accepts_for` is the one place.

- SQLite: group commit (`chatbox.services.group_commit`). Every write already goes through the one database
  thread, so accepts queued behind each other share a transaction and a commit.
- Postgres through psycopg 3: group commit too (`chatbox.services.group_commit_postgres`): the accepts queued
  while a batch is written are the next batch, the one-statement accept per message on one connection in one
  transaction (psycopg's pipeline mode), one commit.
- any other dialect: each accept in its own transaction on the database threads (`Database.run`), committed on
  its own.

Callers (`chatbox.services.ingest`) see only `Accepts.accept`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.orm import Session

from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.ports.queue import DeliveryQueue
from chatbox.services.group_commit import GroupCommitter
from chatbox.services.group_commit_postgres import PostgresGroupCommit
from chatbox.services.inbound import accept_inbound, finish_batch
from chatbox.store.database import Database


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
    db: Session,
    queue: DeliveryQueue,
    connection_id: str,
    messages: Sequence[InboundMessage],
    token: str | None,
    commit: bool,
) -> list[AcceptResult]:
    return [
        accept_inbound(db, queue, connection_id, message, inbound_token=token, commit=commit) for message in messages
    ]


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
            return _accept_all(session, self.queue, connection_id, messages, token, True)


class GroupCommitAccepts:
    """Calls that arrive while a batch is written form the next batch, committed once (SQLite)."""

    def __init__(self, db: Database, queue: DeliveryQueue) -> None:
        self.queue = queue
        self._committer = GroupCommitter(db, before_commit=lambda session: finish_batch(session, queue))

    async def accept(
        self, connection_id: str, messages: Sequence[InboundMessage], *, token: str | None = None
    ) -> list[AcceptResult]:
        queue = self.queue
        results: list[AcceptResult] = await self._committer.submit(
            lambda session, commit: _accept_all(session, queue, connection_id, messages, token, commit)
        )
        return results
