"""Putting deliveries (back) on the queue: after a lost hand-off (the sweeper), after unpause, on redrive.

Each runs in id order so every chat keeps its order on a FIFO queue.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatbox.domain.schemas import DeliveryStatus
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, QueueError
from chatbox.store.models import Delivery
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)


def requeue(db: Session, queue: DeliveryQueue, deliveries: Iterable[Delivery], *, fresh: bool = True) -> int:
    """Put deliveries back on the queue as pending, in id order so each chat keeps its order.

    `fresh` gives each job a new deduplication id, so a FIFO queue does not drop a deliberate
    re-queue that follows an earlier send within its deduplication window. A queue outside the
    database that cannot be reached leaves them pending and un-enqueued: the sweeper sends them
    later, so nothing is lost.
    """
    ordered = sorted(deliveries, key=lambda d: d.id)
    suffix = f".{secrets.token_hex(6)}" if fresh else ""
    jobs = [DeliveryJob(d.id, d.chat_id, f"{d.id}{suffix}" if suffix else "") for d in ordered]
    for delivery in ordered:
        delivery.status = DeliveryStatus.pending.value
        delivery.enqueued_at = None
        if fresh:  # a new queue message: its receive count starts again, and so do its deferrals
            delivery.deferrals = 0
    staged = queue.stage(db, jobs)
    now = utcnow()
    if staged:
        for delivery in ordered:
            delivery.enqueued_at = now
    db.commit()
    if not staged and jobs:
        try:
            queue.send(jobs)
        except QueueError:
            log.warning("queue unreachable; %d deliveries left for the sweeper", len(jobs), exc_info=True)
            return len(jobs)
        for delivery in ordered:
            delivery.enqueued_at = now
        db.commit()
    return len(jobs)


def sweep_unenqueued(db: Session, queue: DeliveryQueue, *, grace_seconds: float, limit: int = 500) -> int:
    """Re-send pending deliveries that never reached the queue (a crash between commit and send)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    stuck = list(
        db.scalars(
            select(Delivery)
            .where(
                Delivery.status == DeliveryStatus.pending.value,
                Delivery.enqueued_at.is_(None),
                Delivery.created_at <= cutoff,
            )
            .order_by(Delivery.id)
            .limit(limit)
        )
    )
    if not stuck:
        return 0
    log.info("sweeper re-sending %d deliveries that never reached the queue", len(stuck))
    # Same deduplication id as the lost send: if that send did reach the queue after all, this one is dropped.
    return requeue(db, queue, stuck, fresh=False)


def release_held(db: Session, queue: DeliveryQueue, mailbox_id: str) -> int:
    """Send a mailbox's held deliveries, in order (after unpause, or once it has a webhook_url)."""
    held = db.scalars(
        select(Delivery).where(Delivery.mailbox_id == mailbox_id, Delivery.status == DeliveryStatus.held.value)
    )
    return requeue(db, queue, held)


def redrive_dead_letters(db: Session, queue: DeliveryQueue, mailbox_id: str) -> int:
    """Give a mailbox's dead deliveries a fresh set of attempts. Returns how many were re-queued."""
    dead = list(
        db.scalars(
            select(Delivery).where(Delivery.mailbox_id == mailbox_id, Delivery.status == DeliveryStatus.dead.value)
        )
    )
    for delivery in dead:
        delivery.attempts = 0
    return requeue(db, queue, dead)
