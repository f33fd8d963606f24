"""Delivering: render a stored message through its mailbox's templates, sign it, POST it, record the attempt.

`handle_delivery_batch` is the one delivery function both queue adapters drive: it takes a batch
of queue records and returns the ids of those that failed (SQS's `batchItemFailures`). A record
fails only when its delivery must be retried; the core's record of attempts decides that, so
"max attempts N" means exactly N POSTs whatever the queue's own receive count says.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatbox.domain import metrics
from chatbox.domain.errors import ChatboxError
from chatbox.domain.rendering import ChatLine, render, render_chat_list
from chatbox.domain.schemas import MailboxStatus
from chatbox.domain.signing import decode_signing_secret, sign
from chatbox.domain.vault import Vault
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, QueueError, QueueRecord
from chatbox.ports.webhook_sender import PostResult, WebhookSender
from chatbox.services.credentials import reveal
from chatbox.store.database import Database
from chatbox.store.models import Chat, Credential, Delivery, Mailbox, Message
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 12 * 3600
# Receives beyond max attempts tolerated before a record is treated as crashing its consumer.
CRASH_ALLOWANCE = 2
ATTEMPT_LOG_LIMIT = 50
CHAT_LIST_LIMIT = 50


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

    def __init__(self, db: Database, vault: Vault, client: WebhookSender, policy: DeliveryPolicy) -> None:
        self.db = db
        self.vault = vault
        self.client = client
        self.policy = policy

    def deliver(self, delivery_id: str) -> Decision:
        """Make one attempt at a delivery (or decide there is nothing to attempt) and record it."""
        with self.db.session() as db:
            prepared = self._prepare(db, delivery_id)
            if isinstance(prepared, Decision):
                db.commit()
                return prepared
        result = self.client.post(prepared.url, prepared.body, prepared.headers)
        with self.db.session() as db:
            decision = self._record(db, delivery_id, result)
            db.commit()
        metrics.deliveries.labels("delivered" if result.ok else "failed").inc()
        return decision

    def give_up(self, delivery_id: str, reason: str) -> None:
        """Mark a delivery dead without another attempt (it is headed for the dead-letter queue)."""
        with self.db.session() as db:
            delivery = db.get(Delivery, delivery_id)
            if delivery is not None and delivery.status not in ("delivered", "dead"):
                _mark_dead(delivery, reason)
                db.commit()

    def _prepare(self, db: Session, delivery_id: str) -> _Prepared | Decision:
        delivery = db.get(Delivery, delivery_id)
        if delivery is None or delivery.status in ("delivered", "dead"):
            return Decision(Outcome.DONE)
        mailbox = db.get(Mailbox, delivery.mailbox_id)
        if mailbox is None or mailbox.status == MailboxStatus.archived.value:
            _mark_dead(delivery, "mailbox archived")
            return Decision(Outcome.DEAD)
        if mailbox.status == MailboxStatus.paused.value or not mailbox.webhook_url:
            # Held until unpause (or until a webhook_url is set), which re-enqueues in order.
            delivery.status = "held"
            delivery.enqueued_at = None
            return Decision(Outcome.DONE)
        if delivery.attempts >= self.policy.max_attempts:
            _mark_dead(delivery, delivery.last_error or "max attempts reached")
            return Decision(Outcome.DEAD)
        message = db.get(Message, delivery.message_id)
        chat = db.get(Chat, delivery.chat_id)
        if message is None or chat is None:
            _mark_dead(delivery, "message or chat missing")
            return Decision(Outcome.DEAD)
        try:
            body = json.dumps(build_webhook_body(db, mailbox, chat, message, delivery), separators=(",", ":")).encode()
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
            delivery.status = "delivered"
            delivery.delivered_at = now
            delivery.last_error = None
            mailbox.consecutive_failures = 0
            mailbox.last_success_at = now
            return Decision(Outcome.DONE)
        _log_attempt(delivery, result)
        if result.status == 410:
            # The receiver says it is gone for good: stop sending until someone unpauses.
            _set_mailbox_error(mailbox, "webhook answered 410 Gone; mailbox paused")
            mailbox.status = MailboxStatus.paused.value
            delivery.status = "held"
            delivery.enqueued_at = None
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
        pause = mailbox.consecutive_failures >= self.policy.pause_after_failures
        if pause and mailbox.status == MailboxStatus.active.value:
            log.warning("mailbox %s paused after %d failed deliveries", mailbox.id, mailbox.consecutive_failures)
            mailbox.status = MailboxStatus.paused.value
        if delivery.attempts >= self.policy.max_attempts:
            _mark_dead(delivery, error)
            return Decision(Outcome.DEAD)
        if pause:
            delivery.status = "held"
            delivery.enqueued_at = None
            return Decision(Outcome.DONE)
        delay = backoff_seconds(delivery.attempts, self.policy.retry_base_seconds)
        if retry_after is not None:
            delay = min(max(delay, retry_after), MAX_BACKOFF_SECONDS)
        delivery.next_attempt_at = utcnow()
        return Decision(Outcome.RETRY, delay)


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


def _mark_dead(delivery: Delivery, error: str) -> None:
    delivery.status = "dead"
    delivery.last_error = error
    delivery.enqueued_at = None


def _set_mailbox_error(mailbox: Mailbox, error: str) -> None:
    mailbox.consecutive_failures += 1
    mailbox.last_error = error
    mailbox.last_error_at = utcnow()


def _attachment_line(attachment: dict[str, Any]) -> str:
    label = " ".join(str(part) for part in (attachment.get("kind", "file"), attachment.get("name")) if part)
    return f"\n[{label}]"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def chat_lines(db: Session, mailbox: Mailbox) -> list[ChatLine]:
    """The mailbox's chats, most recently active first, for $CHAT_LIST."""
    chats = db.scalars(
        select(Chat)
        .where(Chat.mailbox_id == mailbox.id)
        .order_by(Chat.last_activity_at.desc(), Chat.id)
        .limit(CHAT_LIST_LIMIT)
    )
    return [
        ChatLine(c.address, c.name, c.unread_count, c.id == mailbox.focal_chat_id, c.muted)
        for c in chats
        if not c.muted or c.id == mailbox.focal_chat_id
    ]


def build_webhook_body(
    db: Session, mailbox: Mailbox, chat: Chat, message: Message, delivery: Delivery
) -> dict[str, Any]:
    """The webhook JSON: type, delivery id, mailbox, chat, focal flag, rendered content, structured message."""
    focal = mailbox.focal_chat_id == chat.id
    timestamp = message.sent_at or message.received_at
    attachments = "".join(_attachment_line(a) for a in message.attachments)
    variables = {
        "TEXT": message.text or "",
        "SENDER_NAME": message.sender_name or message.sender_id or "someone",
        "SENDER_ID": message.sender_id or "",
        "CHAT_ID": chat.address,
        "CHAT_NAME": chat.name or chat.address,
        "CHAT_TYPE": chat.type,
        "PLATFORM": chat.platform,
        "TIMESTAMP": timestamp.isoformat(),
        "UNREAD": str(chat.unread_count),
        "CHAT_LIST": render_chat_list(chat_lines(db, mailbox)),
        "EVENT_TYPE": message.event_type,
        "MESSAGE_ID": message.id,
        "EXTERNAL_MESSAGE_ID": message.external_id or "",
        "REPLY_TO": message.reply_to_external_id or "",
        "ATTACHMENTS": attachments,
        "MAILBOX_NAME": mailbox.name,
    }
    rendered = render(mailbox.templates, focal=focal, event_type=message.event_type, variables=variables)
    body: dict[str, Any] = {
        "type": message.event_type,
        "id": delivery.id,
        "mailbox_id": mailbox.id,
        "chat_id": chat.address,
        "platform": chat.platform,
        "focal": focal,
        "content": rendered.content,
    }
    if rendered.ephemeral is not None:
        body["ephemeral"] = rendered.ephemeral
    body["message"] = {
        "id": message.id,
        "external_id": message.external_id,
        "chat_id": chat.address,
        "chat_name": chat.name,
        "chat_type": chat.type,
        "sender_id": message.sender_id,
        "sender_name": message.sender_name,
        "text": message.text,
        "attachments": message.attachments,
        "reply_to_external_id": message.reply_to_external_id,
        "event_type": message.event_type,
        "sent_at": _iso(message.sent_at),
        "received_at": _iso(message.received_at),
    }
    return body


class RetryLater(Exception):
    """Raised by `deliver_record` when the record must stay in the queue; its visibility is already set."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.1f}s")
        self.delay = delay


def deliver_record(record: QueueRecord, deliverer: Deliverer, queue: DeliveryQueue) -> None:
    """Handle one queue record. Returns when it may leave the queue; raises RetryLater (or any
    unexpected error) when it must stay, which a batch processor reports as a batch item failure."""
    delivery_id = record.delivery_id()
    if delivery_id is None:
        log.error("queue record %s carries no delivery id; dead-lettering it", record.message_id)
        queue.dead_letter(record)
        return
    if record.receive_count > deliverer.policy.max_attempts + CRASH_ALLOWANCE:
        # Received far more often than attempts were recorded: the delivery keeps crashing the
        # consumer. Give up visibly instead of looping.
        deliverer.give_up(delivery_id, f"gave up after {record.receive_count} receives without a recorded outcome")
        queue.dead_letter(record)
        return
    decision = deliverer.deliver(delivery_id)
    if decision.outcome is Outcome.RETRY:
        queue.retry_later(record, decision.delay)
        raise RetryLater(decision.delay)
    if decision.outcome is Outcome.DEAD:
        queue.dead_letter(record)


def handle_delivery_batch(records: Sequence[QueueRecord], deliverer: Deliverer, queue: DeliveryQueue) -> list[str]:
    """Deliver a batch; return the message ids of records to keep (SQS `batchItemFailures`).

    Per-group order: once a record of a group must stay, the later records of that group in this
    batch are not attempted; they stay too, hidden as long as the record ahead of them.
    """
    failed: list[str] = []
    blocked: dict[str, float] = {}
    for record in records:
        if record.group_id in blocked:
            queue.retry_later(record, blocked[record.group_id])
            failed.append(record.message_id)
            continue
        try:
            deliver_record(record, deliverer, queue)
        except RetryLater as retry:
            failed.append(record.message_id)
            blocked[record.group_id] = retry.delay
        except Exception:
            # Unexpected (database down, a bug): keep it; the queue's receive limit is the backstop.
            log.exception("delivery of queue record %s crashed; it stays in the queue", record.message_id)
            failed.append(record.message_id)
            blocked[record.group_id] = 0.0
    return failed


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
        delivery.status = "pending"
        delivery.enqueued_at = None
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
            .where(Delivery.status == "pending", Delivery.enqueued_at.is_(None), Delivery.created_at <= cutoff)
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
    held = db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox_id, Delivery.status == "held"))
    return requeue(db, queue, held)


def redrive_dead_letters(db: Session, queue: DeliveryQueue, mailbox_id: str) -> int:
    """Give a mailbox's dead deliveries a fresh set of attempts. Returns how many were re-queued."""
    dead = list(db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox_id, Delivery.status == "dead")))
    for delivery in dead:
        delivery.attempts = 0
    return requeue(db, queue, dead)


def recent_deliveries(db: Session, mailbox_id: str, *, limit: int = 20, after: str | None = None) -> list[Delivery]:
    """The mailbox's newest deliveries (oldest first), or those created after the id `after`."""
    stmt = select(Delivery).where(Delivery.mailbox_id == mailbox_id)
    if after is not None:
        return list(db.scalars(stmt.where(Delivery.id > after).order_by(Delivery.id).limit(limit)))
    newest = list(db.scalars(stmt.order_by(Delivery.id.desc()).limit(limit)))
    return newest[::-1]
