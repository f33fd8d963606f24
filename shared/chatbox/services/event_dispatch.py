"""Sending service events to their subscriptions: fan-out from the events outbox, then signed POSTs with retries.

It runs on its own loop with its own HTTP client (`chatbox dev`: a thread beside the delivery consumer;
AWS: a scheduled sweep), so a slow or failing subscriber delays only other events, never inbound or
message deliveries. Each event reaches each subscription at least once, with a stable `webhook-id`
(the event id) for receivers to deduplicate on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.errors import ChatboxError
from chatbox.domain.ids import new_id
from chatbox.domain.schemas import DeliveryStatus
from chatbox.domain.signing import decode_signing_secret, sign
from chatbox.domain.vault import Vault
from chatbox.ports import metrics
from chatbox.ports.webhook_sender import PostResult, WebhookSender
from chatbox.services.credentials import reveal
from chatbox.store.database import Database
from chatbox.store.models import Credential, EventDelivery, EventSubscription, ServiceEvent
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)

PENDING = DeliveryStatus.pending.value


@dataclass(frozen=True)
class EventRetryPolicy:
    """Short on purpose: events describe a moment, and a day-late `mailbox_paused` helps no one.
    The defaults make 6 attempts over about 45 minutes."""

    delays: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)
    # How long a claimed delivery stays invisible to other dispatchers: longer than one POST can take.
    claim_seconds: float = 60.0
    # Sent and given-up events are kept this long (for support questions), then pruned.
    retention: timedelta = timedelta(days=7)
    prune_every_seconds: float = 3600.0

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


def event_body(event: ServiceEvent) -> dict[str, Any]:
    """The JSON an event subscriber receives."""
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "account_id": event.account_id,
        "mailbox_id": event.mailbox_id,
        "data": event.data,
    }


class EventDispatcher:
    """Fans the outbox out to subscriptions and sends what is due. Thread-safe (a session per call)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        client: WebhookSender,
        policy: EventRetryPolicy | None = None,
        *,
        batch: int = 50,
    ) -> None:
        self.db = db
        self.vault = vault
        self.client = client
        self.policy = policy or EventRetryPolicy()
        self.batch = batch
        self._next_prune = 0.0

    def run_once(self, *, budget_seconds: float | None = None) -> int:
        """One round: fan out new events, then attempt every due delivery (up to a batch). Returns attempts made.

        With `budget_seconds`, no attempt starts after that long (one may still take the sender's timeout):
        what a scheduled Lambda invocation runs within its own timeout.
        """
        self.fan_out()
        attempted = self.send_due(budget_seconds=budget_seconds)
        if time.monotonic() >= self._next_prune:
            self.prune()
            self._next_prune = time.monotonic() + self.policy.prune_every_seconds
        return attempted

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Rounds until `stop` is set; a failed round (the database restarting) is logged and retried."""
        while not stop.is_set():
            try:
                attempted = self.run_once()
            except Exception:  # noqa: BLE001 - the next round retries; events stay in the outbox
                log.warning("event dispatch round failed; retrying", exc_info=True)
                attempted = 0
            if not attempted:
                stop.wait(interval)

    def prune(self) -> int:
        """Delete finished deliveries and fanned-out events older than the retention, unless still pending.
        Returns the events deleted."""
        cutoff = utcnow() - self.policy.retention
        with self.db.session() as db:
            db.execute(delete(EventDelivery).where(EventDelivery.status != PENDING, EventDelivery.created_at < cutoff))
            waiting = select(EventDelivery.event_id).where(EventDelivery.status == PENDING)
            deleted = db.execute(
                delete(ServiceEvent)
                .where(ServiceEvent.fanned_out_at < cutoff, ServiceEvent.id.not_in(waiting))
                .returning(ServiceEvent.id)
            ).all()
            db.commit()
            return len(deleted)

    def fan_out(self) -> int:
        """One EventDelivery per (new event, subscription of its account wanting its type). Returns events done."""
        with self.db.session() as db:
            events = list(
                db.scalars(
                    select(ServiceEvent)
                    .where(ServiceEvent.fanned_out_at.is_(None))
                    .order_by(ServiceEvent.id)
                    .limit(self.batch)
                )
            )
            if not events:
                return 0
            accounts = {e.account_id for e in events}
            subscriptions = list(
                db.scalars(select(EventSubscription).where(EventSubscription.account_id.in_(accounts)))
            )
            now = utcnow()
            for event in events:
                for subscription in subscriptions:
                    if subscription.account_id == event.account_id and event.type in subscription.events:
                        db.add(
                            EventDelivery(
                                id=new_id("event_delivery"),
                                event_id=event.id,
                                subscription_id=subscription.id,
                                status=PENDING,
                                attempts=0,
                                next_attempt_at=now,
                                created_at=now,
                            )
                        )
                event.fanned_out_at = now
            try:
                db.commit()
            except IntegrityError:  # another dispatcher fanned these out first
                db.rollback()
                return 0
            return len(events)

    def send_due(self, *, budget_seconds: float | None = None) -> int:
        """Attempt each due delivery once, oldest first (none started after `budget_seconds`). Returns how many
        were attempted."""
        with self.db.session() as db:
            due = list(
                db.scalars(
                    select(EventDelivery.id)
                    .where(EventDelivery.status == PENDING, EventDelivery.next_attempt_at <= utcnow())
                    .order_by(EventDelivery.next_attempt_at, EventDelivery.id)
                    .limit(self.batch)
                )
            )
        deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
        attempted = 0
        for delivery_id in due:
            if deadline is not None and time.monotonic() >= deadline:
                break
            attempted += 1 if self.attempt(delivery_id) else 0
        return attempted

    def attempt(self, delivery_id: str) -> bool:
        """Claim one due delivery, POST it, record the outcome. False when another dispatcher had it."""
        with self.db.session() as db:
            prepared = self._claim_and_prepare(db, delivery_id)
        if prepared is None:
            return False
        url, body, headers = prepared
        result = self.client.post(url, body, headers)
        with self.db.session() as db:
            self._record(db, delivery_id, result)
        metrics.count(metrics.EVENT_DELIVERIES, ("delivered" if result.ok else "failed",))
        return True

    def _claim_and_prepare(self, db: Session, delivery_id: str) -> tuple[str, bytes, dict[str, str]] | None:
        now = utcnow()
        claimed = db.execute(
            update(EventDelivery)
            .returning(EventDelivery.id)
            .where(
                EventDelivery.id == delivery_id,
                EventDelivery.status == PENDING,
                EventDelivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + timedelta(seconds=self.policy.claim_seconds))
        ).scalar_one_or_none()
        db.commit()
        if claimed is None:
            return None
        delivery = db.get(EventDelivery, delivery_id)
        subscription = db.get(EventSubscription, delivery.subscription_id) if delivery else None
        event = db.get(ServiceEvent, delivery.event_id) if delivery else None
        if delivery is None or subscription is None or event is None:
            if delivery is not None:
                delivery.status = DeliveryStatus.dead.value
                delivery.last_error = "subscription deleted"
                db.commit()
            return None
        body = json.dumps(event_body(event), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "chatbox-events/1",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
        }
        if subscription.signing_credential_id:
            credential = db.get(Credential, subscription.signing_credential_id)
            if credential is not None:
                try:
                    key = decode_signing_secret(reveal(self.vault, credential))
                except ChatboxError as exc:
                    self._record(db, delivery_id, PostResult(None, f"cannot sign: {exc.message}", None, 0))
                    return None
                headers["webhook-signature"] = sign(key, event.id, timestamp, body)
        return subscription.url, body, headers

    def _record(self, db: Session, delivery_id: str, result: PostResult) -> None:
        delivery = db.get(EventDelivery, delivery_id)
        if delivery is None:  # its subscription was deleted meanwhile
            return
        delivery.attempts += 1
        now = utcnow()
        if result.ok:
            delivery.status = DeliveryStatus.delivered.value
            delivery.delivered_at = now
            delivery.last_error = None
        elif result.status == 410 or delivery.attempts >= self.policy.max_attempts:
            delivery.status = DeliveryStatus.dead.value
            delivery.last_error = result.error
        else:
            delay = self.policy.delays[delivery.attempts - 1]
            if result.retry_after is not None:
                delay = min(max(delay, result.retry_after), self.policy.delays[-1])
            delivery.last_error = result.error
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        db.commit()
