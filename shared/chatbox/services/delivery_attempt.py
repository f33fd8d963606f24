"""One delivery attempt: sign the rendered webhook body, POST it, record the outcome, decide what comes next.

The core's record of attempts (`Delivery.attempts`, `attempt_log`) is the truth for retries, dead
letters and auto-pause, so "max attempts N" means exactly N POSTs whatever a queue's own receive
count says. What a queue does with a `Decision` is `chatbox.services.delivery_batch`'s business.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatbox.domain.attachments import LinkSigner
from chatbox.domain.errors import ChatboxError
from chatbox.domain.schemas import DeliveryStatus, EventType, MailboxStatus
from chatbox.domain.signing import decode_signing_secret, sign
from chatbox.domain.vault import Vault
from chatbox.ports import metrics
from chatbox.ports.webhook_sender import PostResult, WebhookSender
from chatbox.services.credentials import reveal
from chatbox.services.events import record_event
from chatbox.services.webhook_body import build_webhook_body
from chatbox.store.database import Database
from chatbox.store.models import Chat, Credential, Delivery, Mailbox, Message
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)

# Receives beyond max attempts tolerated before a record is treated as crashing its consumer.
CRASH_ALLOWANCE = 2

# SQS's ceiling for ChangeMessageVisibility; the local queue keeps the same one.
MAX_BACKOFF_SECONDS = 12 * 3600
ATTEMPT_LOG_LIMIT = 50
FINISHED = (DeliveryStatus.delivered.value, DeliveryStatus.dead.value)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    pause_after_failures: int = 20


def backoff_seconds(attempt: int, base: float, *, jitter: float = 0.2, rng: random.Random | None = None) -> float:
    """The wait before retry `attempt` (1, 2, ...): base x 6^(attempt-1), capped at 12 h, with +-20 % jitter."""
    raw = min(base * 6 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    spread: float = (rng or random.Random()).uniform(-jitter, jitter)
    return float(min(raw * (1 + spread), MAX_BACKOFF_SECONDS))


class Outcome(Enum):
    DONE = "done"  # delivered, or nothing (more) to do: remove from the queue
    RETRY = "retry"  # leave in the queue, visible again after the delay
    DEAD = "dead"  # move to the dead-letter queue


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay: float = 0.0


@dataclass(frozen=True)
class _Prepared:
    url: str
    body: bytes
    headers: dict[str, str]


class Deliverer:
    """Delivers one delivery at a time; thread-safe (each call uses its own session)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        client: WebhookSender,
        policy: DeliveryPolicy,
        *,
        links: LinkSigner | None = None,
    ) -> None:
        self.db = db
        self.links = links
        self.vault = vault
        self.client = client
        self.policy = policy

    def deliver(self, delivery_id: str, receive_count: int = 1) -> Decision:
        """Make one attempt at a delivery (or decide there is nothing to attempt) and record it.

        `receive_count` is how often the queue has handed out this delivery's message: received far
        more often than deferrals and attempts explain, it keeps crashing its consumer, and is given up.

        Raises whatever the database raises: the caller keeps the record and retries it soon.
        """
        # Writes take the write lock the accepts take (`Database.write_lock_for`), so the worker and the API
        # queue for SQLite's writer instead of sleeping in its busy handler. Preparing writes only when it
        # decides not to attempt; the lock is not held while it builds and signs the body.
        with self.db.session() as db:
            prepared = self._prepare(db, delivery_id, receive_count)
            if isinstance(prepared, Decision):
                with Database.write_lock_for(db):
                    db.commit()
                return prepared
        started = time.perf_counter()
        result = self.client.post(prepared.url, prepared.body, prepared.headers)
        elapsed = time.perf_counter() - started
        with self.db.session() as db, Database.write_lock_for(db):
            decision = self._record(db, delivery_id, result)
            db.commit()
        # An attempt's outcome, not a DeliveryStatus: a failed attempt leaves the delivery pending.
        outcome = ("delivered" if result.ok else "failed",)
        metrics.count(metrics.DELIVERIES, outcome)
        metrics.observe(metrics.DELIVERY_SECONDS, elapsed, outcome)
        return decision

    def note_deferred(self, delivery_ids: Sequence[str]) -> None:
        """Count a receive that returned these deliveries unattempted (behind their chat's earlier message)."""
        if not delivery_ids:
            return
        with self.db.session() as db, Database.write_lock_for(db):
            db.execute(update(Delivery).where(Delivery.id.in_(delivery_ids)).values(deferrals=Delivery.deferrals + 1))
            db.commit()

    def _prepare(self, db: Session, delivery_id: str, receive_count: int) -> _Prepared | Decision:
        delivery = db.get(Delivery, delivery_id)
        if delivery is None or delivery.status in FINISHED:
            return Decision(Outcome.DONE)
        early = _seconds_until_due(delivery)
        if early is not None:
            # Back before its scheduled attempt: a queue cannot hide a message for a long backoff (SQS
            # caps a record's visibility at 12 h after its receive), so the database's schedule rules.
            # Not an attempt, and not a crash either: counted with the deferrals.
            delivery.deferrals += 1
            return Decision(Outcome.RETRY, early)
        receives = receive_count - delivery.deferrals  # those that handed it to an attempt (or a crash)
        if receives > self.policy.max_attempts + CRASH_ALLOWANCE:
            # Received far more often than attempts were recorded: the delivery keeps crashing the
            # consumer. Give up visibly instead of looping.
            _mark_dead(delivery, f"gave up after {receives} receives without a recorded outcome")
            _dead_lettered(db, delivery, db.get(Mailbox, delivery.mailbox_id))
            return Decision(Outcome.DEAD)
        mailbox = db.get(Mailbox, delivery.mailbox_id)
        if mailbox is None or mailbox.status == MailboxStatus.archived.value:
            _mark_dead(delivery, "mailbox archived")
            return Decision(Outcome.DEAD)
        if mailbox.status == MailboxStatus.paused.value or not mailbox.webhook_url:
            # Held until unpause (or until a webhook_url is set), which re-enqueues in order.
            _hold(delivery)
            return Decision(Outcome.DONE)
        if delivery.attempts >= self.policy.max_attempts:
            _mark_dead(delivery, delivery.last_error or "max attempts reached")
            _dead_lettered(db, delivery, mailbox)
            return Decision(Outcome.DEAD)
        if _earlier_pending_in_chat(db, delivery):
            # A queue hands out a chat's messages in order, but a re-send (the sweeper's, after a lost hand-off)
            # queues behind later ones. The chat's order is the database's: wait for the earlier message.
            delivery.deferrals += 1
            return Decision(Outcome.RETRY, max(self.policy.retry_base_seconds, DUE_TOLERANCE_SECONDS))
        message = db.get(Message, delivery.message_id)
        chat = db.get(Chat, delivery.chat_id)
        if message is None or chat is None:
            _mark_dead(delivery, "message or chat missing")
            return Decision(Outcome.DEAD)
        try:
            body = json.dumps(
                build_webhook_body(db, mailbox, chat, message, delivery, links=self.links), separators=(",", ":")
            ).encode()
            headers = self._headers(db, mailbox, delivery.id, body)
        except ChatboxError as exc:
            # A broken credential cannot fix itself by retrying quickly: count it as a failed attempt.
            decision = self._record_failure(db, delivery, mailbox, f"cannot sign or authorize: {exc.message}", None)
            return decision
        return _Prepared(url=mailbox.webhook_url, body=body, headers=headers)

    def _headers(self, db: Session, mailbox: Mailbox, delivery_id: str, body: bytes) -> dict[str, str]:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "chatbox-webhooks/1",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(timestamp),
        }
        if mailbox.signing_credential_id:
            credential = db.get(Credential, mailbox.signing_credential_id)
            if credential is not None:
                key = decode_signing_secret(reveal(self.vault, credential))
                headers["webhook-signature"] = sign(key, delivery_id, timestamp, body)
        if mailbox.webhook_auth_credential_id:
            credential = db.get(Credential, mailbox.webhook_auth_credential_id)
            if credential is not None:
                headers["authorization"] = reveal(self.vault, credential)
        return headers

    def _record(self, db: Session, delivery_id: str, result: PostResult) -> Decision:
        delivery = db.get(Delivery, delivery_id)
        mailbox = db.get(Mailbox, delivery.mailbox_id) if delivery else None
        if delivery is None or mailbox is None:
            return Decision(Outcome.DONE)
        if result.ok:
            now = utcnow()
            _log_attempt(delivery, result)
            delivery.status = DeliveryStatus.delivered.value
            delivery.delivered_at = now
            delivery.last_error = None
            mailbox.consecutive_failures = 0
            mailbox.last_success_at = now
            return Decision(Outcome.DONE)
        _log_attempt(delivery, result)
        if result.status == 410:
            # The receiver says it is gone for good: stop sending until someone unpauses.
            _set_mailbox_error(mailbox, "webhook answered 410 Gone; mailbox paused")
            if mailbox.status == MailboxStatus.active.value:
                mailbox.status = MailboxStatus.paused.value
                _paused(db, mailbox, "webhook answered 410 Gone")
            _hold(delivery)
            delivery.last_error = result.error
            return Decision(Outcome.DONE)
        return self._record_failure(db, delivery, mailbox, result.error or "failed", result.retry_after, logged=True)

    def _record_failure(
        self,
        db: Session,
        delivery: Delivery,
        mailbox: Mailbox,
        error: str,
        retry_after: float | None,
        *,
        logged: bool = False,
    ) -> Decision:
        if not logged:
            _log_attempt(delivery, PostResult(None, error, None, 0))
        delivery.last_error = error
        db.execute(
            update(Mailbox)
            .where(Mailbox.id == mailbox.id)
            .values(consecutive_failures=Mailbox.consecutive_failures + 1, last_error=error, last_error_at=utcnow())
        )
        db.refresh(mailbox)
        record_event(
            db,
            mailbox.account_id,
            EventType.delivery_failed,
            mailbox_id=mailbox.id,
            data={
                "delivery_id": delivery.id,
                "message_id": delivery.message_id,
                "attempt": delivery.attempts,
                "error": error,
            },
        )
        pause = mailbox.consecutive_failures >= self.policy.pause_after_failures
        if pause and mailbox.status == MailboxStatus.active.value:
            log.warning("mailbox %s paused after %d failed deliveries", mailbox.id, mailbox.consecutive_failures)
            mailbox.status = MailboxStatus.paused.value
            _paused(db, mailbox, f"{mailbox.consecutive_failures} deliveries failed in a row")
        if delivery.attempts >= self.policy.max_attempts:
            _mark_dead(delivery, error)
            _dead_lettered(db, delivery, mailbox)
            return Decision(Outcome.DEAD)
        if pause:
            _hold(delivery)
            return Decision(Outcome.DONE)
        delay = backoff_seconds(delivery.attempts, self.policy.retry_base_seconds)
        if retry_after is not None:
            delay = min(max(delay, retry_after), MAX_BACKOFF_SECONDS)
        delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
        return Decision(Outcome.RETRY, delay)


# A record back this close to its scheduled attempt is attempted: queues count visibility in whole seconds.
DUE_TOLERANCE_SECONDS = 1.0


def _earlier_pending_in_chat(db: Session, delivery: Delivery) -> bool:
    """Whether an earlier message of the delivery's chat still waits to be delivered to the same mailbox
    (delivery ids sort in the order they were created)."""
    earlier = db.scalar(
        select(Delivery.id)
        .where(
            Delivery.mailbox_id == delivery.mailbox_id,
            Delivery.status == DeliveryStatus.pending.value,
            Delivery.chat_id == delivery.chat_id,
            Delivery.id < delivery.id,
        )
        .limit(1)
    )
    return earlier is not None


def _seconds_until_due(delivery: Delivery) -> float | None:
    """Seconds until the delivery's scheduled next attempt, or None when it is due (or none is scheduled)."""
    if delivery.next_attempt_at is None:
        return None
    remaining = (delivery.next_attempt_at - utcnow()).total_seconds()
    return remaining if remaining > DUE_TOLERANCE_SECONDS else None


def _log_attempt(delivery: Delivery, result: PostResult) -> None:
    delivery.attempts += 1
    entry: dict[str, Any] = {
        "attempt": delivery.attempts,
        "at": utcnow().isoformat(),
        "status": result.status,
        "error": result.error,
        "duration_ms": result.duration_ms,
    }
    delivery.attempt_log = [*delivery.attempt_log, entry][-ATTEMPT_LOG_LIMIT:]


def _hold(delivery: Delivery) -> None:
    # Off the queue until release_held re-enqueues the mailbox's held deliveries, in order.
    delivery.status = DeliveryStatus.held.value
    delivery.enqueued_at = None


def _mark_dead(delivery: Delivery, error: str) -> None:
    delivery.status = DeliveryStatus.dead.value
    delivery.last_error = error
    delivery.enqueued_at = None


def _dead_lettered(db: Session, delivery: Delivery, mailbox: Mailbox | None) -> None:
    metrics.count(metrics.DEAD_LETTERED)
    if mailbox is None:
        return
    record_event(
        db,
        mailbox.account_id,
        EventType.message_dead_lettered,
        mailbox_id=mailbox.id,
        data={
            "delivery_id": delivery.id,
            "message_id": delivery.message_id,
            "attempts": delivery.attempts,
            "error": delivery.last_error,
        },
    )


def _paused(db: Session, mailbox: Mailbox, reason: str) -> None:
    record_event(db, mailbox.account_id, EventType.mailbox_paused, mailbox_id=mailbox.id, data={"reason": reason})


def _set_mailbox_error(mailbox: Mailbox, error: str) -> None:
    mailbox.consecutive_failures += 1
    mailbox.last_error = error
    mailbox.last_error_at = utcnow()
