"""The queue port: how accepted deliveries reach the delivery function, and how it settles them.

Two adapters implement it with SQS FIFO semantics: `chatbox.adapters.local_queue` (durable, in the
database, for `chatbox dev` and `chatbox worker`) and `chatbox.adapters.sqs_queue` (Lambda + SQS).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DeliveryJob:
    """One delivery to make. `group_id` keeps a chat's deliveries in order; the delivery id dedupes."""

    delivery_id: str
    group_id: str
    # What a FIFO queue dedupes on (for 5 minutes). The delivery id by default, so a racing re-send of
    # the same hand-off is dropped; a deliberate re-queue (unpause, redrive) must use a fresh one.
    deduplication_id: str = ""

    def dedupe_key(self) -> str:
        return self.deduplication_id or self.delivery_id

    def body(self) -> str:
        return json.dumps({"delivery_id": self.delivery_id})


@dataclass(frozen=True)
class QueueRecord:
    """A received queue message, as both adapters (and the Lambda SQS event) present it."""

    message_id: str
    receipt: str
    body: str
    group_id: str
    receive_count: int

    def delivery_id(self) -> str | None:
        """The delivery this record carries, or None for a body that is not ours."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return None
        value = data.get("delivery_id") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None


class DeliveryQueue(Protocol):
    """What the core needs from a queue. Adapters raise QueueError when the queue is unreachable."""

    def stage(self, db: Session, jobs: Sequence[DeliveryJob]) -> bool:
        """Add jobs inside the caller's open transaction if this queue lives in the same database.

        Returns True when the jobs are thereby enqueued (they commit with the caller's data), False
        when the caller must `send` them after commit.
        """
        ...

    def send(self, jobs: Sequence[DeliveryJob]) -> None:
        """Send jobs after commit (for queues outside the database); wakes consumers otherwise."""
        ...

    def retry_later(self, record: QueueRecord, delay_seconds: float) -> None:
        """Make the record visible again after the delay; its group stays blocked meanwhile."""
        ...

    def dead_letter(self, record: QueueRecord) -> None:
        """Move the record to the dead-letter queue and remove it from the work queue."""
        ...


@runtime_checkable
class InDatabaseQueue(Protocol):
    """A queue kept in the chatbox database's `queue_messages` table under the name `queue` (the local queue).

    A single-statement accept (Postgres) writes the queue's row itself, then calls `wake`.
    """

    queue: str

    def wake(self) -> None:
        """Nudge a consumer waiting for new rows."""
        ...


class QueueError(Exception):
    """The queue could not be reached or refused an operation."""
