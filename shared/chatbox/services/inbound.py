"""Accepting inbound: the message and its pending delivery commit together (transactional outbox)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox import metrics
from chatbox.errors import ConflictError
from chatbox.ids import new_id
from chatbox.normalized import AcceptResult, ChatType, InboundMessage
from chatbox.queues import DeliveryJob, DeliveryQueue, QueueError
from chatbox.schemas import MailboxStatus
from chatbox.store.models import Chat, Connection, Delivery, Mailbox, Message
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)

PENDING = "pending"
HELD = "held"


def accept_inbound(db: Session, queue: DeliveryQueue, connection: Connection, inbound: InboundMessage) -> AcceptResult:
    """Store one inbound event and hand its delivery to the queue.

    The same `external_message_id` on the same connection is accepted once; later copies answer
    `duplicate=True` and deliver nothing. Raises ConflictError when the mailbox is archived.
    """
    for attempt in range(2):
        try:
            result, job = _store(db, queue, connection, inbound)
            break
        except IntegrityError:
            # A concurrent request created the same chat or message first: look again.
            db.rollback()
            if attempt == 1:
                raise
    if job is not None:
        _send_after_commit(db, queue, job)
    metrics.inbound_messages.labels(connection.platform, "duplicate" if result.duplicate else "accepted").inc()
    return result


def _store(
    db: Session, queue: DeliveryQueue, connection: Connection, inbound: InboundMessage
) -> tuple[AcceptResult, DeliveryJob | None]:
    mailbox = db.get(Mailbox, connection.mailbox_id)
    if mailbox is None or mailbox.status == MailboxStatus.archived.value:
        raise ConflictError(f"mailbox {connection.mailbox_id} is archived; it accepts no messages")
    chat = _upsert_chat(db, connection, inbound)
    address = chat.address
    existing = db.scalar(
        select(Message.id).where(
            Message.connection_id == connection.id,
            Message.direction == "in",
            Message.external_id == inbound.external_message_id,
        )
    )
    if existing is not None:
        db.rollback()
        return AcceptResult(message_id=existing, chat_id=address, duplicate=True), None

    now = utcnow()
    message = Message(
        id=new_id("message"),
        chat_id=chat.id,
        connection_id=connection.id,
        direction="in",
        external_id=inbound.external_message_id,
        sender_id=inbound.sender_id,
        sender_name=inbound.sender_name,
        text=inbound.text,
        attachments=inbound.attachments_json(),
        reply_to_external_id=inbound.reply_to_external_id,
        event_type=inbound.event_type,
        sent_at=inbound.sent_at,
        received_at=now,
    )
    db.add(message)
    db.flush()  # the delivery row references the message
    chat.last_activity_at = now
    if mailbox.focal_chat_id != chat.id and inbound.event_type == "message":
        chat.unread_count += 1
    held = mailbox.status == MailboxStatus.paused.value
    delivery = Delivery(
        id=new_id("delivery"),
        message_id=message.id,
        mailbox_id=mailbox.id,
        chat_id=chat.id,
        status=HELD if held else PENDING,
        attempts=0,
        attempt_log=[],
    )
    db.add(delivery)
    job: DeliveryJob | None = None
    if not held:
        job = DeliveryJob(delivery_id=delivery.id, group_id=chat.id)
        if queue.stage(db, [job]):
            delivery.enqueued_at = now
            job = None
    db.commit()
    return AcceptResult(message_id=message.id, chat_id=address, duplicate=False), job


def _upsert_chat(db: Session, connection: Connection, inbound: InboundMessage) -> Chat:
    chat = db.scalar(
        select(Chat).where(Chat.connection_id == connection.id, Chat.external_id == inbound.external_chat_id)
    )
    if chat is None:
        chat = Chat(
            id=new_id("chat"),
            connection_id=connection.id,
            mailbox_id=connection.mailbox_id,
            platform=connection.platform,
            external_id=inbound.external_chat_id,
            name=inbound.chat_name,
            type=(inbound.chat_type or ChatType.direct).value,
            muted=False,
            unread_count=0,
        )
        db.add(chat)
        db.flush()
        return chat
    if inbound.chat_name and inbound.chat_name != chat.name:
        chat.name = inbound.chat_name
    if inbound.chat_type and inbound.chat_type.value != chat.type:
        chat.type = inbound.chat_type.value
    return chat


def _send_after_commit(db: Session, queue: DeliveryQueue, job: DeliveryJob) -> None:
    """Send to an external queue; on failure the delivery stays un-enqueued and the sweeper re-sends it."""
    try:
        queue.send([job])
    except QueueError:
        log.warning("queue send failed for delivery %s; the sweeper will re-send it", job.delivery_id, exc_info=True)
        return
    delivery = db.get(Delivery, job.delivery_id)
    if delivery is not None and delivery.enqueued_at is None:
        delivery.enqueued_at = utcnow()
        db.commit()
