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


def requeue(db: Session, queue: DeliveryQueue, deliveries: Iterable[Delivery], *, restart: bool = True) -> int:
    """Put deliveries back on the queue as pending, in id order so each chat keeps its order.

    Every job carries a fresh deduplication id: a FIFO queue silently drops a message whose id it saw
    in the last 5 minutes, and a hand-off that failed may well have used the delivery id already. Should
    an earlier send have reached the queue after all, the copy is harmless: whichever comes second finds
    the delivery finished (or waits behind it in its chat's group).

    `restart` (unpause, redrive: a deliberate re-queue) starts the deliveries' queue bookkeeping again,
    deferrals and the scheduled next attempt; the sweeper keeps both. A queue outside the database that
    cannot be reached leaves them pending and un-enqueued: the sweeper sends them later, so nothing is lost.
    """
    ordered = sorted(deliveries, key=lambda d: d.id)
    suffix = f".{secrets.token_hex(6)}"
    jobs = [DeliveryJob(d.id, d.chat_id, f"{d.id}{suffix}") for d in ordered]
    for delivery in ordered:
        delivery.status = DeliveryStatus.pending.value
        delivery.enqueued_at = None
        if restart:  # a new queue message: its receive count starts again, and so do its deferrals
            delivery.deferrals = 0
            delivery.next_attempt_at = None
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
    # A fresh deduplication id (see requeue): the lost send may have been an unpause's or a redrive's,
    # within FIFO's 5-minute window, and a re-send under its id would be dropped, pending forever.
    return requeue(db, queue, stuck, restart=False)


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
