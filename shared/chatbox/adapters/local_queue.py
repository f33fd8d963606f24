"""The local queue adapter: SQS FIFO semantics kept durably in the database.

Visibility timeout, receive count, max receives -> dead letter, and per-group order: a group's
messages are handed out, in order, only while none of them is in flight (hidden), so a message
waiting out its retry delay blocks its chat and nothing else.
"""

from __future__ import annotations

import secrets
import socket
import weakref
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, delete, event, insert, select, update
from sqlalchemy.orm import Session, aliased

from chatbox.ports.queue import DeliveryJob, QueueRecord
from chatbox.store.database import Database
from chatbox.store.models import QueueMessage, table_of
from chatbox.store.types import utcnow

_INSERT_QUEUE_MESSAGE = insert(table_of(QueueMessage))
_WAKE_LISTENING = "chatbox.local_queue.wake_listening"

WORK_QUEUE = "deliveries"
DEAD_LETTER_QUEUE = "deliveries-dead"


class LocalQueue:
    """A durable FIFO queue in the chatbox database.

    `wake_path` names a Unix datagram socket the consumer listens on, so a send wakes it at once
    instead of waiting for its next poll.
    """

    _wake_socket: socket.socket | None

    def __init__(
        self,
        db: Database,
        *,
        visibility_timeout: float = 30.0,
        max_receives: int = 0,
        wake_path: Path | None = None,
        queue: str = WORK_QUEUE,
        dead_letter_queue: str = DEAD_LETTER_QUEUE,
    ) -> None:
        self.db = db
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.wake_path = wake_path
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        # One unbound socket for every wake-up: the group commit wakes the consumer after each batch, and a socket
        # opened and closed per wake-up cost the database thread three system calls more. Datagrams need no
        # connection, so threads share it; it closes when the queue is collected (or at exit).
        self._wake_socket = None
        self._wake_address = str(wake_path)
        if wake_path is not None:
            self._wake_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._wake_socket.setblocking(False)
            weakref.finalize(self, self._wake_socket.close)

    # -- producer side -------------------------------------------------------------------------

    def stage(self, db: Session, jobs: Sequence[DeliveryJob]) -> bool:
        if not jobs:
            return True
        # One listener per session, though a batched accept stages many jobs in one transaction (a listener per
        # stage cost a sizable share of an accept); a later commit of that session with nothing staged wakes the
        # consumer for nothing, which costs it one empty receive.
        if not db.info.get(_WAKE_LISTENING):
            event.listen(db, "after_commit", self._wake_after_commit)
            db.info[_WAKE_LISTENING] = True
        now = utcnow()
        db.connection().execute(
            _INSERT_QUEUE_MESSAGE,
            [
                {
                    "queue": self.queue,
                    "group_id": job.group_id,
                    "deduplication_id": job.delivery_id,
                    "body": job.body(),
                    "visible_at": now,
                    "receive_count": 0,
                    "created_at": now,
                }
                for job in jobs
            ],
        )
        return True

    def send(self, jobs: Sequence[DeliveryJob]) -> None:
        if not jobs:
            return
        with self.db.session() as db:
            if not self._contains_all(db, jobs):
                self.stage(db, [job for job in jobs if not self._contains(db, job)])
                db.commit()
        self.wake()

    def _contains(self, db: Session, job: DeliveryJob) -> bool:
        found = db.scalar(
            select(QueueMessage.id).where(
                QueueMessage.queue == self.queue, QueueMessage.deduplication_id == job.delivery_id
            )
        )
        return found is not None

    def _contains_all(self, db: Session, jobs: Sequence[DeliveryJob]) -> bool:
        return all(self._contains(db, job) for job in jobs)

    def _wake_after_commit(self, _session: Session) -> None:
        self.wake()

    def wake(self) -> None:
        """Nudge a consumer waiting on the wake socket; harmless when none listens."""
        if self._wake_socket is None:
            return
        try:
            self._wake_socket.sendto(b"1", self._wake_address)
        except OSError:  # nobody listens, or the consumer has wake-ups enough queued already
            pass

    # -- consumer side -------------------------------------------------------------------------

    def receive(
        self, max_messages: int = 10, *, max_groups: int | None = None, max_per_group: int | None = None
    ) -> list[QueueRecord]:
        """Claim up to `max_messages` visible messages, hiding them for the visibility timeout.

        As SQS FIFO does: a group (chat) with a message in flight is locked, and an unlocked group's
        messages come in order, several to a batch. `max_groups` caps the distinct groups claimed (the
        consumer asks for no more chats than it has free workers), `max_per_group` the messages of one
        group (as many as one worker delivers within the visibility timeout).
        """
        now = utcnow()
        other = aliased(QueueMessage)
        unlocked = (
            select(QueueMessage.id, QueueMessage.group_id)
            .where(
                QueueMessage.queue == self.queue,
                QueueMessage.visible_at <= now,
                ~select(other.id)
                .where(
                    and_(
                        other.queue == QueueMessage.queue,
                        other.group_id == QueueMessage.group_id,
                        other.visible_at > now,
                    )
                )
                .exists(),
            )
            .order_by(QueueMessage.id)
            .limit(max_messages)
        )
        records: list[QueueRecord] = []
        # Every write of the worker queues on the write lock the API's accepts take, rather than meeting them
        # in SQLite's busy handler (which sleeps: `Database.write_lock_for`). Most receives find nothing (one
        # follows each finished delivery): those look first, without the lock, and keep out of the accepts' way.
        with self.db.session() as db:
            if not db.execute(unlocked).first():
                return records
        with self.db.session() as db, Database.write_lock_for(db):
            claimed_of_group: dict[str, int] = {}
            lost: set[str] = set()
            for message_id, group_id in db.execute(unlocked).all():
                taken = claimed_of_group.get(group_id, 0)
                if group_id in lost or (max_per_group is not None and taken >= max_per_group):
                    continue
                if not taken and max_groups is not None and len(claimed_of_group) >= max_groups:
                    continue
                receipt = secrets.token_hex(16)
                claimed = db.execute(
                    update(QueueMessage)
                    .where(QueueMessage.id == message_id, QueueMessage.visible_at <= now)
                    .values(
                        visible_at=now + timedelta(seconds=self.visibility_timeout),
                        receive_count=QueueMessage.receive_count + 1,
                        receipt=receipt,
                    )
                    .returning(QueueMessage)
                ).scalar_one_or_none()
                if claimed is None:
                    # Another consumer got it first: the rest of its group is theirs to deliver in order.
                    lost.add(group_id)
                    continue
                claimed_of_group[group_id] = taken + 1
                records.append(
                    QueueRecord(
                        message_id=str(claimed.id),
                        receipt=receipt,
                        body=claimed.body,
                        group_id=claimed.group_id,
                        receive_count=claimed.receive_count,
                    )
                )
            db.commit()
        if self.max_receives:
            records = self._dead_letter_exhausted(records)
        return records

    def _dead_letter_exhausted(self, records: list[QueueRecord]) -> list[QueueRecord]:
        """SQS redrive: a message received more than max_receives times goes to the dead-letter queue."""
        keep = []
        for record in records:
            if record.receive_count > self.max_receives:
                self.dead_letter(record)
            else:
                keep.append(record)
        return keep

    def delete(self, record: QueueRecord) -> None:
        with self.db.session() as db, Database.write_lock_for(db):
            db.execute(
                delete(QueueMessage).where(
                    QueueMessage.id == int(record.message_id), QueueMessage.receipt == record.receipt
                )
            )
            db.commit()

    def retry_later(self, record: QueueRecord, delay_seconds: float) -> None:
        with self.db.session() as db, Database.write_lock_for(db):
            db.execute(
                update(QueueMessage)
                .where(QueueMessage.id == int(record.message_id), QueueMessage.receipt == record.receipt)
                .values(visible_at=utcnow() + timedelta(seconds=max(0.0, delay_seconds)))
            )
            db.commit()

    def dead_letter(self, record: QueueRecord) -> None:
        with self.db.session() as db, Database.write_lock_for(db):
            db.execute(
                update(QueueMessage)
                .where(QueueMessage.id == int(record.message_id))
                .values(queue=self.dead_letter_queue, receipt=None)
            )
            db.commit()

    def depth(self, queue: str | None = None) -> int:
        with self.db.session() as db:
            rows = db.scalars(select(QueueMessage.id).where(QueueMessage.queue == (queue or self.queue)))
            return len(list(rows))
