"""The statements of a batched accept on SQLite, run on a pooled connection's raw `sqlite3` connection
(`Database.sqlite_write_transaction`).

The group commit (`chatbox.services.sqlite_batch_accept`) writes many accepts in one transaction on the one
database thread; through SQLAlchemy each statement cost more Python (compiled-cache lookup, parameter and result
processing) than SQLite spent on it, all of it holding the GIL the event loop needs. Here every statement is SQL
text (the `sqlite3` module prepares each once and keeps it in its statement cache), parameters are tuples, and
rows that need no answer go in one `executemany`, whose loop runs in C.

Values are stored exactly as the SQLAlchemy column types store them (readers elsewhere read them unchanged):
`UTCDateTime` as `YYYY-MM-DD HH:MM:SS.ffffff` in UTC (`sqlite_datetime`), JSON columns as `json.dumps` of the
value (`None` as the JSON text `null`, as `JSON(none_as_null=False)` does), booleans as 0/1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatbox.domain.schemas import EventType

_READ_TARGET = """
SELECT c.inbound_token_hash, c.status, c.platform, c.account_id, c.mailbox_id, m.status, m.focal_chat_id
FROM connections c JOIN mailboxes m ON m.id = c.mailbox_id
WHERE c.id = ?
"""
# One statement text whatever the batch's size (a JSON array of ids), so it is prepared once.
_STORED_COPIES = """
SELECT external_id, id FROM messages
WHERE connection_id = ? AND direction = 'in' AND external_id IN (SELECT value FROM json_each(?))
"""
# As `chatbox.services.inbound._statements().upsert_chat`, for all of a batch's messages to one chat at once.
_UPSERT_CHAT = """
INSERT INTO chats (id, connection_id, mailbox_id, platform, external_id, name, type, muted, unread_count,
                   last_activity_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
ON CONFLICT (mailbox_id, platform, external_id) DO UPDATE SET
    connection_id = excluded.connection_id,
    last_activity_at = excluded.last_activity_at,
    unread_count = chats.unread_count + CASE WHEN chats.id = ? THEN 0 ELSE excluded.unread_count END,
    name = coalesce(excluded.name, chats.name),
    type = CASE WHEN ? THEN excluded.type ELSE chats.type END
RETURNING id
"""
_INSERT_MESSAGE = """
INSERT INTO messages (id, chat_id, connection_id, direction, external_id, sender_id, sender_name, text, attachments,
                      reply_to_external_id, event_type, sent_at, received_at, target_external_id, reaction,
                      previous_text)
VALUES (?, ?, ?, 'in', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_TEXT_BEFORE_EDIT = "SELECT text FROM messages WHERE chat_id = ? AND external_id = ? ORDER BY id LIMIT 1"
_MARK_EDITED = """
UPDATE messages SET text = ?, edited_at = ?, attachments = coalesce(?, attachments)
WHERE chat_id = ? AND external_id = ?
"""
_MARK_DELETED = "UPDATE messages SET deleted_at = ? WHERE chat_id = ? AND external_id = ?"
_INSERT_NEW_CHAT_EVENT = f"""
INSERT INTO service_events (id, account_id, mailbox_id, type, data, occurred_at, fanned_out_at)
VALUES (?, ?, ?, '{EventType.new_chat.value}', ?, ?, NULL)
"""
_INSERT_DELIVERY = """
INSERT INTO deliveries (id, message_id, mailbox_id, chat_id, status, attempts, deferrals, attempt_log, enqueued_at,
                        created_at, updated_at)
VALUES (?, ?, ?, ?, ?, 0, 0, '[]', ?, ?, ?)
"""
_INSERT_QUEUE_ROW = """
INSERT INTO queue_messages (queue, group_id, deduplication_id, body, visible_at, receive_count, created_at)
VALUES (?, ?, ?, ?, ?, 0, ?)
"""


def sqlite_datetime(value: datetime) -> str:
    """How `UTCDateTime` stores a datetime on SQLite (SQLAlchemy's DATETIME format, in UTC)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_json(value: Any) -> str:
    """How a JSON column stores a value (SQLAlchemy's default serializer; `None` as `null`)."""
    return json.dumps(value)


@dataclass(frozen=True)
class TargetRow:
    """The connection an accept arrived on, and its mailbox."""

    inbound_token_hash: str
    status: str
    platform: str
    account_id: str
    mailbox_id: str
    mailbox_status: str
    focal_chat_id: str | None


def read_target(raw: sqlite3.Connection, connection_id: str) -> TargetRow | None:
    row = raw.execute(_READ_TARGET, (connection_id,)).fetchone()
    return None if row is None else TargetRow(*row)


def stored_copies(raw: sqlite3.Connection, connection_id: str, external_ids: Sequence[str]) -> dict[str, str]:
    """The ids of the inbound messages of the connection already stored under these external ids."""
    rows = raw.execute(_STORED_COPIES, (connection_id, json.dumps(list(external_ids)))).fetchall()
    return dict(rows)


@dataclass(frozen=True)
class ChatTouch:
    """What a batch's messages to one chat do to it: insert it with `fresh_id`, or update the stored one."""

    fresh_id: str
    connection_id: str
    mailbox_id: str
    platform: str
    external_id: str
    name: str | None  # the last name the messages gave; the stored one stays when None
    type: str
    type_given: bool  # False: a stored chat keeps its type
    unread: int  # added to the stored count unless the chat is the mailbox's focal chat
    focal_chat_id: str | None
    now: str


def upsert_chat(raw: sqlite3.Connection, touch: ChatTouch) -> str:
    """Insert or update the chat; its id (`touch.fresh_id` when it is new)."""
    row = raw.execute(
        _UPSERT_CHAT,
        (
            touch.fresh_id,
            touch.connection_id,
            touch.mailbox_id,
            touch.platform,
            touch.external_id,
            touch.name,
            touch.type,
            touch.unread,
            touch.now,
            touch.now,
            touch.focal_chat_id or "",
            touch.type_given,
        ),
    ).fetchone()
    chat_id: str = row[0]
    return chat_id


# (id, chat_id, connection_id, external_id, sender_id, sender_name, text, attachments, reply_to_external_id,
#  event_type, sent_at, received_at, target_external_id, reaction, previous_text)
MessageRow = tuple[
    str,
    str,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str,
    str | None,
    str,
    str | None,
    str,
    str | None,
    str,
    str | None,
]


def insert_messages(raw: sqlite3.Connection, rows: Sequence[MessageRow]) -> None:
    """Insert inbound messages. A stored copy fails the statement (`sqlite3.IntegrityError`): the batch looked
    for copies first, so one can only come from a writer outside the write lock, and the batch is run again one
    accept at a time."""
    if len(rows) == 1:
        raw.execute(_INSERT_MESSAGE, rows[0])
    elif rows:
        raw.executemany(_INSERT_MESSAGE, rows)


def text_before_edit(raw: sqlite3.Connection, chat_id: str, target_external_id: str) -> str | None:
    row = raw.execute(_TEXT_BEFORE_EDIT, (chat_id, target_external_id)).fetchone()
    return None if row is None else row[0]


def mark_edited(
    raw: sqlite3.Connection, chat_id: str, target_external_id: str, text: str | None, attachments: str | None, now: str
) -> None:
    """The edited message now reads `text` (and carries `attachments`, when the edit has any)."""
    raw.execute(_MARK_EDITED, (text, now, attachments, chat_id, target_external_id))


def mark_deleted(raw: sqlite3.Connection, chat_id: str, target_external_id: str, now: str) -> None:
    raw.execute(_MARK_DELETED, (now, chat_id, target_external_id))


# (id, account_id, mailbox_id, data, occurred_at)
EventRow = tuple[str, str, str, str, str]


def insert_new_chat_events(raw: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
    if rows:
        raw.executemany(_INSERT_NEW_CHAT_EVENT, rows)


# (id, message_id, mailbox_id, chat_id, status, enqueued_at, created_at, updated_at)
DeliveryRow = tuple[str, str, str, str, str, str | None, str, str]


def insert_deliveries(raw: sqlite3.Connection, rows: Sequence[DeliveryRow]) -> None:
    if rows:
        raw.executemany(_INSERT_DELIVERY, rows)


# (queue, group_id, deduplication_id, body, visible_at, created_at): the local queue's row
# (`chatbox.adapters.local_queue.LocalQueue.stage`).
QueueRow = tuple[str, str, str, str, str, str]


def insert_queue_rows(raw: sqlite3.Connection, rows: Sequence[QueueRow]) -> None:
    if rows:
        raw.executemany(_INSERT_QUEUE_ROW, rows)
