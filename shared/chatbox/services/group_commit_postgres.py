"""Group commit for the durable accept on Postgres: the accepts queued while a batch is written form the next
batch, written on ONE connection in ONE transaction by one multi-row statement (`chatbox.store.
postgres_batch_accept`; an edit, a deletion or a second copy in the batch adds a statement), then one commit.

On Postgres an accept alone is one autocommit statement, and around it chatbox pays a thread hop, a session, a
pool checkout and the server a commit (a WAL flush) per message. Batched, a process pays each once per batch,
and psycopg's pipeline mode sends the batch's statements and its COMMIT without waiting for each answer (one
round trip). Up to `IN_FLIGHT` batches are written at once per process: nothing waits for a timer, an idle server
commits each accept alone, and a busy one commits whatever arrived meanwhile. A caller is answered only after the
commit that holds its message returned (a 202 means committed); the local queue's rows are in the batch's
transaction (the statement writes them) and its consumer is woken after the commit; an external queue (SQS) is
sent the batch's jobs after the commit, and the sweeper re-sends what that send missed.

The rows are sorted by chat (and the statement upserts the chats in their key's order), so two processes' batches
take the chats' row locks in the same order instead of deadlocking on them. A copy of a message later in the same
batch sees the first one stored and answers as a duplicate. Anything else that fails in the batch (a copy or a new
chat stored meanwhile by another process or by this process's other batch in flight, which aborts a Postgres
transaction; a connection the server dropped; a message the server refuses) rolls the whole batch back, and its
accepts run again one by one in autocommit as they would alone (`chatbox.services.inbound_postgres`), so each gets
its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, InDatabaseQueue, QueueError
from chatbox.services.inbound import accept_inbound
from chatbox.services.inbound_postgres import accept_input, answer_of, count_accept, local_queue_name
from chatbox.store.database import Database
from chatbox.store.models import Delivery
from chatbox.store.postgres_accept import AcceptInput, AcceptRow, accept_batch_on_postgres
from chatbox.store.postgres_batch_accept import accept_rows_on_postgres
from chatbox.store.types import utcnow

if TYPE_CHECKING:  # imported by the Postgres dialect when it connects; a SQLite process never loads it
    import psycopg

log = logging.getLogger(__name__)

# Batches written at once, each on its own connection (two of one process that touch one chat queue on its row lock,
# in the same sorted order: no deadlock). With one statement per message, 2 paid off: the server took long per batch
# and the next was gathered meanwhile (Postgres/SQLite req/s 1.53x against 0.89x with 1). With the multi-row
# statement a batch is short on the server, and 1 writes larger batches for less CPU on both sides: chatbox 0.13-0.19
# against 0.14-0.26 ms per accept, the server 0.10-0.11 against 0.11-0.14, req/s 0.84-1.60x against 0.76-0.85x of
# SQLite's, p99 10-51 ms against 18-169 ms (three runs of each, `bench/README.md`).
IN_FLIGHT = 1

# A backlog beyond this is written in several transactions: each holds its chats' row locks for less time, and the
# first callers are answered sooner.
_LARGEST_BATCH = 256


@dataclass
class AcceptRequest:
    """One caller's accept: the messages of one connection, and the inbound token they were proven with."""

    connection_id: str
    messages: Sequence[InboundMessage]
    token: str | None = None


# What a request comes to: its results, or the error its caller raises.
Outcome = list[AcceptResult] | Exception


@dataclass
class _Pending:
    request: AcceptRequest
    future: asyncio.Future[list[AcceptResult]]
    loop: asyncio.AbstractEventLoop


@dataclass
class _Prepared:
    request: AcceptRequest
    inputs: list[AcceptInput] = field(default_factory=list)
    refused: Exception | None = None  # raised before anything was sent (an id that is no connection's)


class PostgresGroupCommit:
    """`chatbox.services.accepts.Accepts` on Postgres (psycopg 3): many accepts to a transaction and a commit.

    Thread-safe; `accept` is called from event loops, the batches run on `Database.executor`."""

    def __init__(
        self,
        db: Database,
        queue: DeliveryQueue,
        *,
        pipelined: bool = True,
        in_flight: int = IN_FLIGHT,
        set_wise: bool = True,
    ) -> None:
        """`pipelined=False` sends each statement after the previous one's answer; `in_flight` batches may be
        written at once, each on its own connection; `set_wise=False` runs the one-message statement per message
        instead of the multi-row one (all measured in `bench/`)."""
        self.db = db
        self.queue = queue
        self.pipelined = pipelined
        self.set_wise = set_wise
        self.in_flight = in_flight
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._drains = 0

    async def accept(
        self, connection_id: str, messages: Sequence[InboundMessage], *, token: str | None = None
    ) -> list[AcceptResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[AcceptResult]] = loop.create_future()
        with self._lock:
            self._pending.append(_Pending(AcceptRequest(connection_id, messages, token), future, loop))
            start = self._drains < self.in_flight
            if start:
                self._drains += 1
        if start:
            self.db.executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[:_LARGEST_BATCH], self._pending[_LARGEST_BATCH:]
                if not batch:
                    self._drains -= 1
                    return
            outcomes: list[Outcome]
            try:
                outcomes = self.accept_batch([item.request for item in batch])
            except Exception as exc:  # noqa: BLE001 - every caller gets the error rather than waiting forever
                outcomes = [exc] * len(batch)
            for item, outcome in zip(batch, outcomes, strict=True):
                _settle(item, outcome)

    def accept_batch(self, requests: Sequence[AcceptRequest]) -> list[Outcome]:
        """Accept `requests` as one batch on this thread (blocking); each one's outcome once committed.

        What `accept` runs on the database thread; callable directly from a thread with no event loop."""
        if len(requests) == 1 and len(requests[0].messages) == 1:
            # Alone, the autocommit statement is the whole transaction: no BEGIN and COMMIT to send or run.
            return [self._alone(_Prepared(requests[0]))]
        started = time.perf_counter()
        batch = [_Prepared(request) for request in requests]
        queue_name = local_queue_name(self.queue)
        for item in batch:
            request = item.request
            try:
                item.inputs = [
                    accept_input(
                        self.queue, request.connection_id, message, inbound_token=request.token, queue_name=queue_name
                    )
                    for message in request.messages
                ]
            except AuthenticationError as exc:
                item.refused = exc
        to_send = [(item, values) for item in batch if item.refused is None for values in item.inputs]
        # Stable: a chat's messages keep their order (and their ids' order) in the batch.
        to_send.sort(key=lambda pair: (pair[1].connection_id, pair[1].external_chat_id))
        try:
            rows = self._write([values for _, values in to_send])
        except Exception:  # noqa: BLE001 - rolled back; each accept is tried again on its own
            log.info("a batch of %d accepts failed; accepting them one by one", len(to_send), exc_info=True)
            return [self._alone(item) for item in batch]
        row_of = {id(values): row for (_, values), row in zip(to_send, rows, strict=True)}
        outcomes: list[Outcome] = []
        jobs: list[DeliveryJob] = []
        for item in batch:
            if item.refused is not None:
                outcomes.append(item.refused)
                continue
            try:
                answers = [
                    answer_of(values, row_of[id(values)], message, inbound_token=item.request.token)
                    for values, message in zip(item.inputs, item.request.messages, strict=True)
                ]
            except (AuthenticationError, ConflictError) as exc:  # nothing was written for this connection
                outcomes.append(exc)
                continue
            outcomes.append([answer.result for answer in answers])
            jobs.extend(answer.job for answer in answers if answer.job is not None)
            for answer in answers:
                count_accept(answer, started)
        if jobs:
            self._hand_to_queue(jobs)
        return outcomes

    def _write(self, inputs: list[AcceptInput]) -> list[AcceptRow | None]:
        if not inputs:
            return []
        pooled = self.db.engine.raw_connection()
        try:
            connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
            if connection.autocommit:
                connection.autocommit = False
            try:
                write = accept_rows_on_postgres if self.set_wise else accept_batch_on_postgres
                return write(connection, inputs, pipelined=self.pipelined)
            except BaseException:
                _roll_back(pooled, connection)
                raise
        finally:
            pooled.close()

    def _alone(self, item: _Prepared) -> Outcome:
        if item.refused is not None:
            return item.refused
        request = item.request
        try:
            with self.db.session() as session:
                return [
                    accept_inbound(session, self.queue, request.connection_id, message, inbound_token=request.token)
                    for message in request.messages
                ]
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
            return exc

    def _hand_to_queue(self, jobs: list[DeliveryJob]) -> None:
        """After the commit: wake the local queue's consumer, or send an external queue the batch's jobs (on
        failure the deliveries stay un-enqueued and the sweeper re-sends them)."""
        if isinstance(self.queue, InDatabaseQueue):
            self.queue.wake()
            return
        try:
            self.queue.send(jobs)
        except QueueError:
            log.warning("queue send failed for %d deliveries; the sweeper will re-send them", len(jobs), exc_info=True)
            return
        try:
            with self.db.session() as session:
                sent = [job.delivery_id for job in jobs]
                session.execute(update(Delivery).where(Delivery.id.in_(sent)).values(enqueued_at=utcnow()))
                session.commit()
        except SQLAlchemyError:
            # The messages are committed and their jobs sent: the callers get their answers; the sweeper sends
            # these again later, and the queue's deduplication (or the receiver's, by delivery id) drops the copy.
            log.warning("could not mark %d sent deliveries as enqueued", len(jobs), exc_info=True)


def _roll_back(pooled: Any, connection: psycopg.Connection[Any]) -> None:
    """End the failed transaction; a connection the server dropped leaves the pool instead."""
    if not connection.closed and not connection.broken:
        try:
            connection.rollback()
            return
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused either
            log.warning("rolling back a failed batch failed; dropping its connection", exc_info=True)
    pooled.invalidate()


def _settle(item: _Pending, outcome: Outcome) -> None:
    def resolve() -> None:
        if item.future.done():  # the caller went away (a cancelled request); its accept stands
            return
        if isinstance(outcome, Exception):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)

    try:
        item.loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the caller's loop closed (shutdown): its accept stands, nobody waits for the answer
        pass
