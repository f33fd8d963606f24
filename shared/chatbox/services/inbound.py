"""Accepting inbound: the message and its pending delivery commit together (transactional outbox).

This is the hottest path in chatbox, so it speaks SQL Core rather than the ORM: one joined read to
authenticate, an upsert for the chat, an insert-or-nothing for the message (the idempotency key),
and the delivery (plus, for the local queue, its queue row) in the same commit.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.ids import is_valid_id, new_id, token_matches
from chatbox.domain.normalized import AcceptResult, ChatType, InboundMessage
from chatbox.domain.schemas import ConnectionStatus, DeliveryStatus, EventType, MailboxStatus
from chatbox.ports import metrics
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, QueueError
from chatbox.services.events import record_event
from chatbox.services.inbound_postgres import accept_in_one_statement
from chatbox.store.database import Database
from chatbox.store.models import Chat, Connection, Delivery, Mailbox, Message, table_of
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundTarget:
    """What accepting needs to know about the connection a message arrived on."""

    connection_id: str
    account_id: str
    platform: str
    mailbox_id: str
    mailbox_status: str
    focal_chat_id: str | None


# Built once: building a select's comparisons costs more per call than running it (SQLAlchemy's compiled cache
# serves the rest), and Core on the session's connection skips the ORM's execution layers.
_READ_TARGET = (
    select(
        Connection.inbound_token_hash,
        Connection.status,
        Connection.platform,
        Connection.account_id,
        Connection.mailbox_id,
        Mailbox.status.label("mailbox_status"),
        Mailbox.focal_chat_id,
    )
    .join(Mailbox, Mailbox.id == Connection.mailbox_id)
    .where(Connection.id == bindparam("connection_id"))
)
_EXISTING_MESSAGE = select(Message.id).where(
    Message.connection_id == bindparam("connection_id"),
    Message.direction == "in",
    Message.external_id == bindparam("external_id"),
)


def _read_target(db: Session, connection_id: str) -> Any:
    if not is_valid_id("connection", connection_id):
        return None
    return db.connection().execute(_READ_TARGET, {"connection_id": connection_id}).first()


def _existing_message_id(db: Session, connection_id: str, external_id: str) -> str | None:
    found: str | None = (
        db.connection().execute(_EXISTING_MESSAGE, {"connection_id": connection_id, "external_id": external_id})
    ).scalar_one_or_none()
    return found


def authenticate_inbound(db: Session, connection_id: str, presented: str) -> str:
    """Check the inbound token of an active connection and return its platform; AuthenticationError otherwise,
    whatever the reason."""
    row = _read_target(db, connection_id)
    if row is None or not token_matches(presented, row.inbound_token_hash) or row.status != ConnectionStatus.active:
        raise AuthenticationError("invalid inbound token for this connection")
    platform: str = row.platform
    return platform


def accept_inbound(
    db: Session,
    queue: DeliveryQueue,
    connection_id: str,
    inbound: InboundMessage,
    *,
    inbound_token: str | None = None,
) -> AcceptResult:
    """Store one inbound event for an authenticated connection and hand its delivery to the queue.

    The same `external_message_id` on the same connection is accepted once; later copies answer
    `duplicate=True` and deliver nothing. The connection and mailbox are read afresh, so an archived
    connection raises AuthenticationError and an archived mailbox ConflictError; so does an `inbound_token`
    (when given) that is no longer the connection's, however recently it was proven (a rotated token).

    Each call commits its message. SQLite's group commit writes many accepts in one transaction instead
    (`chatbox.services.sqlite_batch_accept`), and runs them through here one by one when a batch fails.
    """
    if db.get_bind().dialect.name == "postgresql":
        return accept_in_one_statement(db, queue, connection_id, inbound, inbound_token=inbound_token)
    started = time.perf_counter()
    row = _read_target(db, connection_id)
    if row is None or row.status != ConnectionStatus.active:
        raise AuthenticationError("invalid inbound token for this connection")
    if inbound_token is not None and not token_matches(inbound_token, row.inbound_token_hash):
        raise AuthenticationError("invalid inbound token for this connection")
    target = InboundTarget(
        connection_id, row.account_id, row.platform, row.mailbox_id, row.mailbox_status, row.focal_chat_id
    )
    if target.mailbox_status == MailboxStatus.archived.value:
        raise ConflictError(f"mailbox {target.mailbox_id} is archived; it accepts no messages")
    address = f"{target.platform}:{inbound.external_chat_id}"
    result, job = _store_retrying_a_concurrent_chat(db, queue, target, inbound, address)
    if job is not None:
        _send_after_commit(db, queue, job)
    metrics.count(metrics.INBOUND_MESSAGES, (target.platform, "duplicate" if result.duplicate else "accepted"))
    metrics.observe(metrics.ACCEPT_SECONDS, time.perf_counter() - started, (target.platform,))
    return result


@dataclass(frozen=True)
class _Statements:
    upsert_chat: Any
    insert_message: Any
    insert_delivery: Any


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    """The accept path's statements, built once per dialect with bound parameters so SQLAlchemy's
    compiled cache serves every request (building `.values(...)` per call costs more than SQLite)."""
    if dialect in _STATEMENTS:
        return _STATEMENTS[dialect]
    # Imported for the dialect in use only: a Lambda function on Postgres never loads SQLite's dialect.
    dialect_insert: Any = importlib.import_module(
        "sqlalchemy.dialects.postgresql" if dialect == "postgresql" else "sqlalchemy.dialects.sqlite"
    ).insert
    chats, messages = table_of(Chat), table_of(Message)
    chat_insert = dialect_insert(chats)
    upsert_chat = chat_insert.on_conflict_do_update(
        index_elements=["mailbox_id", "platform", "external_id"],
        set_={
            # A chat follows the connection that carries it now (one archived and recreated for the platform).
            "connection_id": chat_insert.excluded.connection_id,
            "last_activity_at": chat_insert.excluded.last_activity_at,
            # The focal chat's messages arrive in full, so they are never unread.
            "unread_count": chats.c.unread_count
            + case((chats.c.id == bindparam("focal_chat_id"), 0), else_=chat_insert.excluded.unread_count),
            "name": func.coalesce(chat_insert.excluded.name, chats.c.name),
            "type": case((bindparam("type_given"), chat_insert.excluded.type), else_=chats.c.type),
        },
    ).returning(chats.c.id)
    insert_message = (
        dialect_insert(messages)
        .on_conflict_do_nothing(index_elements=["connection_id", "direction", "external_id"])
        .returning(messages.c.id)
    )
    built = _Statements(upsert_chat, insert_message, insert(table_of(Delivery)))
    _STATEMENTS[dialect] = built
    return built


_UNIQUE_VIOLATION = "23505"  # SQLSTATE


def _store_retrying_a_concurrent_chat(
    db: Session, queue: DeliveryQueue, target: InboundTarget, inbound: InboundMessage, address: str
) -> tuple[AcceptResult, DeliveryJob | None]:
    """`_store`, once more when a concurrent accept created the same new chat first.

    Chats have two unique keys, (mailbox, platform, external id) and (connection, external id), and Postgres's
    upsert arbitrates on one only: when two transactions insert the same new chat at once, the second can fail on
    the other key with a unique violation instead of updating the row. Run again, the chat exists and the upsert
    updates it. (SQLite cannot race here: its writes are serialized.)
    """
    for attempt in (1, 2):
        try:
            with Database.write_lock_for(db):
                return _store(db, queue, target, inbound, address)
        except IntegrityError as exc:
            db.rollback()
            if attempt == 2 or getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
    raise AssertionError("unreachable: the second attempt returned or raised")


def _store(
    db: Session,
    queue: DeliveryQueue,
    target: InboundTarget,
    inbound: InboundMessage,
    address: str,
) -> tuple[AcceptResult, DeliveryJob | None]:
    connection = db.connection()
    statements = _statements(connection.dialect.name)
    now = utcnow()
    fresh_chat_id = new_id("chat")
    chat_id: str = connection.execute(
        statements.upsert_chat,
        {
            "id": fresh_chat_id,
            "connection_id": target.connection_id,
            "mailbox_id": target.mailbox_id,
            "platform": target.platform,
            "external_id": inbound.external_chat_id,
            "name": inbound.chat_name,
            "type": (inbound.chat_type or ChatType.direct).value,
            "type_given": inbound.chat_type is not None,
            "muted": False,
            "unread_count": 1 if inbound.event_type == "message" else 0,
            "focal_chat_id": target.focal_chat_id or "",
            "last_activity_at": now,
            "created_at": now,
        },
    ).scalar_one()

    message_id = new_id("message")
    previous_text = _text_before_edit(db, chat_id, inbound)
    inserted = connection.execute(
        statements.insert_message,
        {
            "id": message_id,
            "chat_id": chat_id,
            "connection_id": target.connection_id,
            "direction": "in",
            "external_id": inbound.external_message_id,
            "sender_id": inbound.sender_id,
            "sender_name": inbound.sender_name,
            "text": inbound.text,
            "attachments": inbound.attachments_json(),
            "reply_to_external_id": inbound.reply_to_external_id,
            "event_type": inbound.event_type,
            "sent_at": inbound.sent_at,
            "received_at": now,
            "target_external_id": inbound.target_external_id,
            "reaction": inbound.reaction.model_dump() if inbound.reaction is not None else None,
            "previous_text": previous_text,
        },
    ).scalar_one_or_none()
    if inserted is None:
        # Seen before: undo the chat touch and answer with the message first accepted.
        db.rollback()
        existing = _existing_message_id(db, target.connection_id, inbound.external_message_id)
        return AcceptResult(message_id=existing or "", chat_id=address, duplicate=True), None

    mark_target(db, chat_id, inbound, now)
    if chat_id == fresh_chat_id:
        record_event(
            db,
            target.account_id,
            EventType.new_chat,
            mailbox_id=target.mailbox_id,
            data={"chat_id": address, "name": inbound.chat_name, "connection_id": target.connection_id},
        )
    held = target.mailbox_status == MailboxStatus.paused.value
    delivery_id = new_id("delivery")
    job = None if held else DeliveryJob(delivery_id=delivery_id, group_id=chat_id)
    delivery = {
        "id": delivery_id,
        "message_id": message_id,
        "mailbox_id": target.mailbox_id,
        "chat_id": chat_id,
        "status": (DeliveryStatus.held if held else DeliveryStatus.pending).value,
        "attempts": 0,
        "attempt_log": [],
        "enqueued_at": None,
        "created_at": now,
        "updated_at": now,
    }
    result = AcceptResult(message_id=message_id, chat_id=address, duplicate=False)
    staged = job is not None and queue.stage(db, [job])
    connection.execute(statements.insert_delivery, {**delivery, "enqueued_at": now if staged else None})
    db.commit()
    return result, None if staged else job


def _text_before_edit(db: Session, chat_id: str, inbound: InboundMessage) -> str | None:
    """What an edited message said before (kept on the edit event, so the agent reads what changed)."""
    if inbound.event_type != "edit" or inbound.target_external_id is None:
        return None
    return db.scalar(
        select(Message.text)
        .where(Message.chat_id == chat_id, Message.external_id == inbound.target_external_id)
        .order_by(Message.id)
        .limit(1)
    )


def mark_target(db: Session, chat_id: str, inbound: InboundMessage, now: datetime) -> None:
    """An edit or a deletion also changes the message it names, so read_chat shows the text as it now reads
    (or that it is gone); a target chatbox never stored (older than the connection) changes nothing."""
    if inbound.target_external_id is None or inbound.event_type not in ("edit", "delete"):
        return
    values: dict[str, Any] = (
        {"text": inbound.text, "edited_at": now} if inbound.event_type == "edit" else {"deleted_at": now}
    )
    if inbound.event_type == "edit" and inbound.attachments:
        values["attachments"] = inbound.attachments_json()
    db.execute(
        update(Message)
        .where(Message.chat_id == chat_id, Message.external_id == inbound.target_external_id)
        .values(**values)
    )


def _send_after_commit(db: Session, queue: DeliveryQueue, job: DeliveryJob) -> None:
    """Send to an external queue; on failure the delivery stays un-enqueued and the sweeper re-sends it."""
    try:
        queue.send([job])
    except QueueError:
        log.warning("queue send failed for delivery %s; the sweeper will re-send it", job.delivery_id, exc_info=True)
        return
    db.execute(update(Delivery).where(Delivery.id == job.delivery_id).values(enqueued_at=utcnow()))
    db.commit()
