"""The accept of one inbound message on Postgres as a single statement: one round trip, its own transaction
(`accept_on_postgres`), or one of a batch sharing a transaction and a commit (`accept_batch_on_postgres`).

Data-modifying CTEs read the connection and its mailbox, upsert the chat, insert the message, the `new_chat`
service event (when this message created the chat), the delivery and the local queue's row, and return what
the accept answers with. It runs in autocommit, so the statement is the transaction: no BEGIN or COMMIT
round trip, and psycopg 3 prepares it server-side after its first few executions (same text every time).

Semantics equal the SQLite path's (`chatbox.services.inbound`):
- a copy of a stored message (same connection, direction `in`, external id) writes nothing and returns the
  first one's id;
- a copy racing the first one passes the existence check, then fails on the messages' unique constraint,
  which rolls back the whole statement (the chat's touch included); the caller runs it again and gets the
  first one's id;
- nothing is written unless the connection is active, its mailbox is not archived and (when given) the
  token's hash is the connection's; the caller raises from the returned row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.exc import IntegrityError

from chatbox.domain.schemas import ConnectionStatus, DeliveryStatus, EventType, MailboxStatus

if TYPE_CHECKING:  # imported by the Postgres dialect when it connects; a SQLite process never loads it
    import psycopg

# The statuses are constants of the schema, written into the text so the planner sees them.
_ACCEPT = text(
    f"""
WITH target AS (
    SELECT c.id, c.account_id, c.platform, c.mailbox_id, c.status, c.inbound_token_hash,
           m.status AS mailbox_status, m.focal_chat_id
    FROM connections c JOIN mailboxes m ON m.id = c.mailbox_id
    WHERE c.id = :connection_id
),
existing AS (
    SELECT id FROM messages
    WHERE connection_id = :connection_id AND direction = 'in' AND external_id = :external_message_id
),
admitted AS (
    SELECT * FROM target
    WHERE status = '{ConnectionStatus.active.value}' AND mailbox_status <> '{MailboxStatus.archived.value}'
      AND (CAST(:token_hash AS text) IS NULL OR inbound_token_hash = CAST(:token_hash AS text))
      AND NOT EXISTS (SELECT 1 FROM existing)
),
chat AS (
    INSERT INTO chats AS c
        (id, connection_id, mailbox_id, platform, external_id, name, type, muted, unread_count,
         last_activity_at, created_at)
    SELECT :fresh_chat_id, a.id, a.mailbox_id, a.platform, :external_chat_id, :chat_name, :chat_type, false,
           :unread, :now, :now
    FROM admitted a
    ON CONFLICT (mailbox_id, platform, external_id) DO UPDATE SET
        connection_id = excluded.connection_id,
        last_activity_at = excluded.last_activity_at,
        unread_count = c.unread_count + CASE
            WHEN c.id = (SELECT focal_chat_id FROM target) THEN 0 ELSE excluded.unread_count END,
        name = coalesce(excluded.name, c.name),
        type = CASE WHEN :type_given THEN excluded.type ELSE c.type END
    RETURNING c.id
),
message AS (
    INSERT INTO messages
        (id, chat_id, connection_id, direction, external_id, sender_id, sender_name, text, attachments,
         reply_to_external_id, event_type, sent_at, received_at, target_external_id, reaction, previous_text)
    SELECT :message_id, chat.id, :connection_id, 'in', :external_message_id, :sender_id, :sender_name,
           CAST(:text AS text),
           CAST(:attachments AS jsonb), :reply_to_external_id, CAST(:event_type AS text), :sent_at, :now,
           CAST(:target_external_id AS text), CAST(:reaction AS jsonb),
           CASE WHEN CAST(:event_type AS text) = 'edit' THEN (
               SELECT t.text FROM messages t
               WHERE t.chat_id = chat.id AND t.external_id = CAST(:target_external_id AS text)
               ORDER BY t.id LIMIT 1
           ) END
    FROM chat
    RETURNING id, chat_id
),
marked AS (
    -- An edit or a deletion also changes the message it names (`chatbox.services.inbound.mark_target`).
    UPDATE messages t SET
        text = CASE WHEN CAST(:event_type AS text) = 'edit' THEN CAST(:text AS text) ELSE t.text END,
        attachments = CASE WHEN CAST(:event_type AS text) = 'edit'
                                AND jsonb_array_length(CAST(:attachments AS jsonb)) > 0
                           THEN CAST(:attachments AS jsonb) ELSE t.attachments END,
        edited_at = CASE WHEN CAST(:event_type AS text) = 'edit' THEN CAST(:now AS timestamptz) ELSE t.edited_at END,
        deleted_at = CASE WHEN CAST(:event_type AS text) = 'delete' THEN CAST(:now AS timestamptz) ELSE t.deleted_at END
    FROM message
    WHERE CAST(:event_type AS text) IN ('edit', 'delete') AND t.chat_id = message.chat_id
      AND t.external_id = CAST(:target_external_id AS text)
),
new_chat_event AS (
    INSERT INTO service_events (id, account_id, mailbox_id, type, data, occurred_at, fanned_out_at)
    SELECT :event_id, a.account_id, a.mailbox_id, '{EventType.new_chat.value}',
           jsonb_build_object('chat_id', a.platform || ':' || :external_chat_id, 'name', CAST(:chat_name AS text),
                              'connection_id', a.id),
           :now, NULL
    FROM admitted a JOIN message ON message.chat_id = :fresh_chat_id
),
delivery AS (
    INSERT INTO deliveries
        (id, message_id, mailbox_id, chat_id, status, attempts, attempt_log, enqueued_at, created_at, updated_at)
    SELECT :delivery_id, message.id, a.mailbox_id, message.chat_id,
           CASE WHEN a.mailbox_status = '{MailboxStatus.paused.value}'
                THEN '{DeliveryStatus.held.value}' ELSE '{DeliveryStatus.pending.value}' END,
           0, CAST('[]' AS jsonb),
           CASE WHEN a.mailbox_status = '{MailboxStatus.paused.value}' OR CAST(:queue AS text) IS NULL
                THEN NULL ELSE CAST(:now AS timestamptz) END,
           :now, :now
    FROM admitted a, message
    RETURNING id, chat_id, status
),
queued AS (
    INSERT INTO queue_messages (queue, group_id, deduplication_id, body, visible_at, receive_count, created_at)
    SELECT CAST(:queue AS text), d.chat_id, d.id, :queue_body, :now, 0, :now
    FROM delivery d
    WHERE d.status = '{DeliveryStatus.pending.value}' AND CAST(:queue AS text) IS NOT NULL
)
SELECT t.status, t.inbound_token_hash, t.platform, t.account_id, t.mailbox_id, t.mailbox_status,
       (SELECT id FROM existing) AS existing_id,
       (SELECT chat_id FROM delivery) AS chat_id,
       (SELECT status FROM delivery) AS delivery_status
FROM target t
"""
)

# A copy racing the first one fails on the unique constraint at most once per other copy in flight.
_ATTEMPTS = 8


@dataclass(frozen=True)
class AcceptInput:
    """One accept's values; the ids are fresh ones the statement uses if it writes."""

    connection_id: str
    token_hash: str | None
    external_chat_id: str
    chat_name: str | None
    chat_type: str
    type_given: bool
    unread: int
    external_message_id: str
    sender_id: str | None
    sender_name: str | None
    text: str | None
    attachments: list[dict[str, Any]]
    reply_to_external_id: str | None
    event_type: str
    sent_at: datetime | None
    now: datetime
    target_external_id: str | None
    reaction: dict[str, Any] | None
    fresh_chat_id: str
    message_id: str
    event_id: str
    delivery_id: str
    queue: str | None
    queue_body: str


@dataclass(frozen=True)
class AcceptRow:
    """What the statement read and wrote. `chat_id`/`delivery_status` are None when it wrote nothing."""

    status: str
    inbound_token_hash: str
    platform: str
    account_id: str
    mailbox_id: str
    mailbox_status: str
    existing_id: str | None
    chat_id: str | None
    delivery_status: str | None


def parameters_of(values: AcceptInput) -> dict[str, Any]:
    """The statement's bound parameters for one accept."""
    return {
        "connection_id": values.connection_id,
        "token_hash": values.token_hash,
        "external_chat_id": values.external_chat_id,
        "chat_name": values.chat_name,
        "chat_type": values.chat_type,
        "type_given": values.type_given,
        "unread": values.unread,
        "external_message_id": values.external_message_id,
        "sender_id": values.sender_id,
        "sender_name": values.sender_name,
        "text": values.text,
        "attachments": json.dumps(values.attachments),
        "reply_to_external_id": values.reply_to_external_id,
        "event_type": values.event_type,
        "sent_at": values.sent_at,
        "target_external_id": values.target_external_id,
        "reaction": json.dumps(values.reaction) if values.reaction is not None else None,
        "now": values.now,
        "fresh_chat_id": values.fresh_chat_id,
        "message_id": values.message_id,
        "event_id": values.event_id,
        "delivery_id": values.delivery_id,
        "queue": values.queue,
        "queue_body": values.queue_body,
    }


def accept_on_postgres(connection: Connection, values: AcceptInput) -> AcceptRow | None:
    """Run the accept statement on an autocommit `connection`; None when the connection id is unknown."""
    params = parameters_of(values)
    for attempt in range(_ATTEMPTS):
        try:
            row = connection.execute(_ACCEPT, params).first()
        except IntegrityError:
            # A concurrent copy committed first; the next run sees it as existing.
            if attempt == _ATTEMPTS - 1:
                raise
            continue
        return None if row is None else AcceptRow(*row)
    raise AssertionError("unreachable")


# The same text in psycopg's own placeholders, for a batch sent on the driver's connection (pipeline mode is
# psycopg's, below SQLAlchemy). Same text as the one-by-one accept's, so the server prepares it once per connection.
ACCEPT_FOR_DRIVER = str(_ACCEPT.compile(dialect=psycopg_dialect.dialect()))  # type: ignore[no-untyped-call]


def accept_batch_on_postgres(
    connection: psycopg.Connection[Any], batch: Sequence[AcceptInput], *, pipelined: bool = True
) -> list[AcceptRow | None]:
    """Run the accept statement once per input in ONE transaction on a psycopg `connection` (not in autocommit),
    then commit; the rows once committed, in `batch`'s order (None for an unknown connection id).

    Pipelined, the statements and the COMMIT go to the server without waiting for each answer: one round trip
    for the batch. A later input that copies an earlier one (same connection and external id) sees it stored and
    answers it as existing. Any error (a copy or a new chat stored meanwhile by another process, which aborts
    the transaction, a dropped connection) raises with nothing committed; the caller rolls back.
    """
    if pipelined:
        with connection.pipeline():
            cursors = [connection.execute(ACCEPT_FOR_DRIVER, parameters_of(values)) for values in batch]
            connection.commit()
        found = [cursor.fetchone() for cursor in cursors]
    else:
        found = [connection.execute(ACCEPT_FOR_DRIVER, parameters_of(values)).fetchone() for values in batch]
        connection.commit()
    return [None if row is None else AcceptRow(*row) for row in found]
