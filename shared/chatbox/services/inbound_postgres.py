"""Accepting inbound on Postgres: the whole accept in one statement (`chatbox.store.postgres_accept`).

`chatbox.services.inbound.accept_inbound` hands over here on Postgres. The statement commits on its own
(autocommit), so an accept is one round trip to the server instead of eight (BEGIN, the target read, five
writes, COMMIT). A connection the server dropped (a restart, `pg_terminate_backend`) surfaces here as an
invalidated connection; the pool then discards the connections it had, and the accept runs once more on a
fresh one, which is why the engine needs no ping per checkout.

Group commit (`chatbox.services.group_commit_postgres`) sends the same statement for a batch of accepts in one
transaction; it builds each one's values with `accept_input` and reads its answer with `answer_of`, as here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import EllipsisType

from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.ids import hash_token, is_valid_id, new_id, token_matches
from chatbox.domain.normalized import AcceptResult, ChatType, InboundMessage
from chatbox.domain.schemas import ConnectionStatus, DeliveryStatus, MailboxStatus
from chatbox.ports import metrics
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, InDatabaseQueue, QueueError
from chatbox.store.models import Delivery
from chatbox.store.postgres_accept import AcceptInput, AcceptRow, accept_on_postgres
from chatbox.store.types import utcnow

log = logging.getLogger(__name__)

_INVALID = "invalid inbound token for this connection"


def accept_in_one_statement(
    db: Session, queue: DeliveryQueue, connection_id: str, inbound: InboundMessage, *, inbound_token: str | None
) -> AcceptResult:
    """`accept_inbound` on Postgres: the same answers and errors, one round trip."""
    started = time.perf_counter()
    values = accept_input(queue, connection_id, inbound, inbound_token=inbound_token)
    row = _run(_engine_of(db), values)
    answer = answer_of(values, row, inbound, inbound_token=inbound_token)
    if answer.job is not None:
        if isinstance(queue, InDatabaseQueue):
            queue.wake()
        else:
            _send_after_commit(db, queue, answer.job)
    count_accept(answer, started)
    return answer.result


def local_queue_name(queue: DeliveryQueue) -> str | None:
    """The name the statement writes the local queue's rows under; None for a queue outside the database."""
    return queue.queue if isinstance(queue, InDatabaseQueue) else None


def accept_input(
    queue: DeliveryQueue,
    connection_id: str,
    inbound: InboundMessage,
    *,
    inbound_token: str | None,
    queue_name: str | None | EllipsisType = ...,
) -> AcceptInput:
    """The statement's values for one accept, with fresh ids; AuthenticationError for an id that is no
    connection's. A batch passes `queue_name` (`local_queue_name`), read once: the protocol check costs
    microseconds."""
    if not is_valid_id("connection", connection_id):
        raise AuthenticationError(_INVALID)
    if queue_name is ...:
        queue_name = local_queue_name(queue)
    delivery_id = new_id("delivery")
    return AcceptInput(
        connection_id=connection_id,
        # Compared in SQL only to decide whether to write (hashes of a 256-bit token); the answer below
        # comes from the constant-time comparison.
        token_hash=None if inbound_token is None else hash_token(inbound_token),
        external_chat_id=inbound.external_chat_id,
        chat_name=inbound.chat_name,
        chat_type=(inbound.chat_type or ChatType.direct).value,
        type_given=inbound.chat_type is not None,
        unread=1 if inbound.event_type == "message" else 0,
        external_message_id=inbound.external_message_id,
        sender_id=inbound.sender_id,
        sender_name=inbound.sender_name,
        text=inbound.text,
        attachments=inbound.attachments_json(),
        reply_to_external_id=inbound.reply_to_external_id,
        event_type=inbound.event_type,
        sent_at=inbound.sent_at,
        target_external_id=inbound.target_external_id,
        reaction=inbound.reaction.model_dump() if inbound.reaction is not None else None,
        now=utcnow(),
        fresh_chat_id=new_id("chat"),
        message_id=new_id("message"),
        event_id=new_id("event"),
        delivery_id=delivery_id,
        queue=queue_name,
        queue_body=DeliveryJob(delivery_id=delivery_id, group_id="").body(),
    )


@dataclass(frozen=True)
class Answer:
    """A committed accept's answer; `job` is the delivery to hand to the queue (None: a copy, or held)."""

    result: AcceptResult
    platform: str
    job: DeliveryJob | None


def answer_of(
    values: AcceptInput, row: AcceptRow | None, inbound: InboundMessage, *, inbound_token: str | None
) -> Answer:
    """What the statement's row answers. Raises AuthenticationError (unknown or archived connection, a token
    that is not its) or ConflictError (an archived mailbox): the statement wrote nothing then."""
    if row is None or row.status != ConnectionStatus.active:
        raise AuthenticationError(_INVALID)
    if inbound_token is not None and not token_matches(inbound_token, row.inbound_token_hash):
        raise AuthenticationError(_INVALID)
    if row.mailbox_status == MailboxStatus.archived.value:
        raise ConflictError(f"mailbox {row.mailbox_id} is archived; it accepts no messages")
    address = f"{row.platform}:{inbound.external_chat_id}"
    if row.chat_id is None:
        result = AcceptResult(message_id=row.existing_id or "", chat_id=address, duplicate=True)
        return Answer(result, row.platform, None)
    result = AcceptResult(message_id=values.message_id, chat_id=address, duplicate=False)
    pending = row.delivery_status == DeliveryStatus.pending.value
    job = DeliveryJob(delivery_id=values.delivery_id, group_id=row.chat_id) if pending else None
    return Answer(result, row.platform, job)


def count_accept(answer: Answer, started: float) -> None:
    metrics.count(metrics.INBOUND_MESSAGES, (answer.platform, "duplicate" if answer.result.duplicate else "accepted"))
    metrics.observe(metrics.ACCEPT_SECONDS, time.perf_counter() - started, (answer.platform,))


def _engine_of(db: Session) -> Engine:
    bind = db.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def _run(engine: Engine, values: AcceptInput) -> AcceptRow | None:
    for attempt in (1, 2):
        try:
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                return accept_on_postgres(connection, values)
        except DBAPIError as exc:
            # The statement never reached a live server, or its answer never came back: running it again
            # stores nothing twice (had the first run committed, the second answers it as a duplicate).
            if attempt == 2 or not exc.connection_invalidated:
                raise
            log.warning("the database dropped a pooled connection; accepting again on a fresh one")
    raise AssertionError("unreachable")


def _send_after_commit(db: Session, queue: DeliveryQueue, job: DeliveryJob) -> None:
    """Send to an external queue; on failure the delivery stays un-enqueued and the sweeper re-sends it."""
    try:
        queue.send([job])
    except QueueError:
        log.warning("queue send failed for delivery %s; the sweeper will re-send it", job.delivery_id, exc_info=True)
        return
    db.execute(update(Delivery).where(Delivery.id == job.delivery_id).values(enqueued_at=utcnow()))
    db.commit()
