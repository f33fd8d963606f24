"""A group commit's batch of accepts on Postgres in a few statements: the batch's rows as ONE JSON document,
expanded server side (`jsonb_array_elements`) by ONE multi-row statement, instead of the one-message statement once
per message (`chatbox.store.postgres_accept`).

Per message, the one-message statement costs chatbox the adaptation of ~25 parameters (and psycopg the conversion
of its 5 KB text) and the server the planning and run of a statement of eight CTEs; here each is paid once per
batch, the rows are encoded by `json.dumps` in C, and the text goes out as written on a raw cursor. (Measured in
`bench/accept_batch.py`: one array per column, `unnest`-ed, cost 71 us of chatbox CPU per accept at 32 per batch,
the list adaptation being Python; the JSON document 43 us; the one-message statements 165 us.)
What the statement does for a row equals what the one-message statement does for it, run in the batch's order:
- the connection, its mailbox and the token are checked per row; a refused row writes nothing;
- a copy of a stored message (same connection, direction `in`, external id) writes nothing and answers with the
  stored one's id;
- the chats of the admitted rows are upserted once each (a statement may not update a row twice): a new chat gets
  its first message's fresh id, type and creation time, and one `new_chat` event (the first message's); every chat
  ends with what the rows' upserts in order would have left: the last row's connection and time, the last name
  given, the last type given, the unread counts added up (none on the mailbox's focal chat);
- each admitted row gets its message, its delivery (held while the mailbox is paused) and the local queue's row.

Split into several statements, sent in order in the same transaction (each sees what the previous ones wrote):
- an edit or a deletion, which reads and changes the message it names, runs the one-message statement where it
  stands in the batch, so a message and its edit in one batch are written in that order;
- a second copy of a message in the batch starts a new statement, which sees the first one stored and answers it
  as a duplicate.
A copy stored meanwhile by another transaction still fails the statement on the messages' unique key (the
caller rolls the batch back and accepts one by one, as before).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chatbox.domain.schemas import ConnectionStatus, DeliveryStatus, EventType, MailboxStatus
from chatbox.store.postgres_accept import ACCEPT_FOR_DRIVER, AcceptInput, AcceptRow, parameters_of

if TYPE_CHECKING:  # imported by the Postgres dialect when it connects; a SQLite process never loads it
    import psycopg

# Written by the one-message statement, where they stand in the batch: they read and change another message.
_IN_PLACE = frozenset({"edit", "delete"})

_PENDING = DeliveryStatus.pending.value
_PAUSED = MailboxStatus.paused.value

# The statuses are constants of the schema, written into the text so the planner sees them. `n` is a row's place
# in the batch: "first" and "last" below are by it.
ACCEPT_ROWS = f"""
WITH input AS (
    -- One JSON array per row, in the order `_parameters_of` writes them.
    SELECT r->>0 AS connection_id, r->>1 AS token_hash, r->>2 AS external_chat_id, r->>3 AS chat_name,
           r->>4 AS chat_type, (r->>5)::bool AS type_given, (r->>6)::int AS unread, r->>7 AS external_message_id,
           r->>8 AS sender_id, r->>9 AS sender_name, r->>10 AS text, r->11 AS attachments,
           r->>12 AS reply_to_external_id, r->>13 AS event_type, (r->>14)::timestamptz AS sent_at,
           (r->>15)::timestamptz AS now, r->>16 AS target_external_id, nullif(r->17, 'null') AS reaction,
           r->>18 AS fresh_chat_id, r->>19 AS message_id, r->>20 AS event_id, r->>21 AS delivery_id,
           r->>22 AS queue_body, n
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(r, n)
),
target AS (
    SELECT c.id, c.account_id, c.platform, c.mailbox_id, c.status, c.inbound_token_hash,
           m.status AS mailbox_status, m.focal_chat_id
    FROM connections c JOIN mailboxes m ON m.id = c.mailbox_id
    WHERE c.id = ANY($3::text[])
),
checked AS (
    -- The copy check as a subquery per row: a lookup in the messages' unique index whatever the planner guesses
    -- of a join's sizes (a join planned on a fresh table's statistics scanned the whole table per batch).
    SELECT i.*, t.status, t.inbound_token_hash, t.account_id, t.platform, t.mailbox_id, t.mailbox_status,
           t.focal_chat_id,
           (SELECT e.id FROM messages e
            WHERE e.connection_id = i.connection_id AND e.direction = 'in'
              AND e.external_id = i.external_message_id) AS existing_id
    FROM input i LEFT JOIN target t ON t.id = i.connection_id
),
admitted AS (
    SELECT * FROM checked
    WHERE status = '{ConnectionStatus.active.value}' AND mailbox_status <> '{MailboxStatus.archived.value}'
      AND (token_hash IS NULL OR inbound_token_hash = token_hash)
      AND existing_id IS NULL
),
chat_rows AS (
    SELECT mailbox_id, platform, external_chat_id,
           (array_agg(fresh_chat_id ORDER BY n))[1] AS fresh_chat_id,
           (array_agg(connection_id ORDER BY n DESC))[1] AS connection_id,
           (array_agg(chat_name ORDER BY n DESC) FILTER (WHERE chat_name IS NOT NULL))[1] AS name,
           (array_agg(chat_type ORDER BY n DESC) FILTER (WHERE type_given))[1] AS type_given,
           (array_agg(chat_type ORDER BY n))[1] AS first_type,
           sum(unread)::int AS unread,
           (array_agg(now ORDER BY n))[1] AS created_at,
           (array_agg(now ORDER BY n DESC))[1] AS last_activity_at,
           min(focal_chat_id) AS focal_chat_id
    FROM admitted
    GROUP BY mailbox_id, platform, external_chat_id
),
chat AS (
    INSERT INTO chats AS c
        (id, connection_id, mailbox_id, platform, external_id, name, type, muted, unread_count,
         last_activity_at, created_at)
    SELECT fresh_chat_id, connection_id, mailbox_id, platform, external_chat_id, name,
           coalesce(type_given, first_type), false, unread, last_activity_at, created_at
    FROM chat_rows
    -- Row locks in one order for every batch, of this process or another: they queue instead of deadlocking.
    ORDER BY mailbox_id, platform, external_chat_id
    ON CONFLICT (mailbox_id, platform, external_id) DO UPDATE SET
        connection_id = excluded.connection_id,
        last_activity_at = excluded.last_activity_at,
        unread_count = c.unread_count + CASE
            WHEN c.id = (SELECT r.focal_chat_id FROM chat_rows r
                         WHERE r.mailbox_id = c.mailbox_id AND r.platform = c.platform
                           AND r.external_chat_id = c.external_id)
            THEN 0 ELSE excluded.unread_count END,
        name = coalesce(excluded.name, c.name),
        type = coalesce(
            (SELECT r.type_given FROM chat_rows r
             WHERE r.mailbox_id = c.mailbox_id AND r.platform = c.platform AND r.external_chat_id = c.external_id),
            c.type)
    RETURNING c.id, c.mailbox_id, c.platform, c.external_id
),
placed AS (
    SELECT a.*, chat.id AS chat_id,
           CASE WHEN a.mailbox_status = '{_PAUSED}' THEN '{DeliveryStatus.held.value}' ELSE '{_PENDING}' END
               AS delivery_status
    FROM admitted a JOIN chat
      ON chat.mailbox_id = a.mailbox_id AND chat.platform = a.platform AND chat.external_id = a.external_chat_id
),
message AS (
    INSERT INTO messages
        (id, chat_id, connection_id, direction, external_id, sender_id, sender_name, text, attachments,
         reply_to_external_id, event_type, sent_at, received_at, target_external_id, reaction, previous_text)
    SELECT message_id, chat_id, connection_id, 'in', external_message_id, sender_id, sender_name, text,
           attachments, reply_to_external_id, event_type, sent_at, now, target_external_id, reaction, NULL
    FROM placed
),
new_chat_event AS (
    INSERT INTO service_events (id, account_id, mailbox_id, type, data, occurred_at, fanned_out_at)
    SELECT event_id, account_id, mailbox_id, '{EventType.new_chat.value}',
           jsonb_build_object('chat_id', platform || ':' || external_chat_id, 'name', chat_name,
                              'connection_id', connection_id),
           now, NULL
    FROM placed WHERE chat_id = fresh_chat_id
),
delivery AS (
    INSERT INTO deliveries
        (id, message_id, mailbox_id, chat_id, status, attempts, attempt_log, enqueued_at, created_at, updated_at)
    SELECT delivery_id, message_id, mailbox_id, chat_id, delivery_status, 0, CAST('[]' AS jsonb),
           CASE WHEN delivery_status = '{_PENDING}' AND CAST($2 AS text) IS NOT NULL THEN now END,
           now, now
    FROM placed
),
queued AS (
    INSERT INTO queue_messages (queue, group_id, deduplication_id, body, visible_at, receive_count, created_at)
    SELECT CAST($2 AS text), chat_id, delivery_id, queue_body, now, 0, now
    FROM placed
    WHERE delivery_status = '{_PENDING}' AND CAST($2 AS text) IS NOT NULL
)
-- Data-modifying CTEs run whether or not the answer reads them; every row that `placed` holds is written (or the
-- statement fails), so the answer reads what was written from it.
SELECT c.status, c.inbound_token_hash, c.platform, c.account_id, c.mailbox_id, c.mailbox_status, c.existing_id,
       p.chat_id, p.delivery_status
FROM checked c LEFT JOIN placed p ON p.n = c.n
ORDER BY c.n
"""


def _parameters_of(batch: Sequence[AcceptInput]) -> tuple[str, str | None, list[str]]:
    """The statement's parameters: the rows as one JSON document (encoded in C: one parameter for psycopg to adapt
    instead of a list per column), the local queue's name (one per process: every input names it) and the
    connections (looked up by primary key whatever the planner guesses of the rows)."""
    rows = [
        [
            values.connection_id,
            values.token_hash,
            values.external_chat_id,
            values.chat_name,
            values.chat_type,
            values.type_given,
            values.unread,
            values.external_message_id,
            values.sender_id,
            values.sender_name,
            values.text,
            values.attachments,
            values.reply_to_external_id,
            values.event_type,
            None if values.sent_at is None else values.sent_at.isoformat(),
            values.now.isoformat(),
            values.target_external_id,
            values.reaction,
            values.fresh_chat_id,
            values.message_id,
            values.event_id,
            values.delivery_id,
            values.queue_body,
        ]
        for values in batch
    ]
    return json.dumps(rows, ensure_ascii=False), batch[0].queue, list({values.connection_id for values in batch})


def statements_of(batch: Sequence[AcceptInput]) -> list[tuple[bool, list[AcceptInput]]]:
    """`batch` cut into the statements that write it, in order: (True, rows) for a multi-row statement, (False,
    [one]) for an edit or a deletion on the one-message statement."""
    statements: list[tuple[bool, list[AcceptInput]]] = []
    rows: list[AcceptInput] = []
    in_rows: set[tuple[str, str]] = set()
    for values in batch:
        if values.event_type in _IN_PLACE:
            if rows:
                statements.append((True, rows))
                rows, in_rows = [], set()
            statements.append((False, [values]))
            continue
        key = (values.connection_id, values.external_message_id)
        if key in in_rows:  # a copy: the next statement sees the first one stored
            statements.append((True, rows))
            rows, in_rows = [], set()
        rows.append(values)
        in_rows.add(key)
    if rows:
        statements.append((True, rows))
    return statements


def accept_rows_on_postgres(
    connection: psycopg.Connection[Any], batch: Sequence[AcceptInput], *, pipelined: bool = True
) -> list[AcceptRow | None]:
    """Write `batch` in ONE transaction on a psycopg `connection` (not in autocommit) in as few statements as its
    edits, deletions and copies allow (one, for new messages), then commit; the rows once committed, in `batch`'s
    order (None for an unknown connection id).

    Pipelined, the statements and the COMMIT go to the server in one round trip. Any error raises with nothing
    committed; the caller rolls back."""
    statements = statements_of(batch)
    if pipelined:
        with connection.pipeline():
            cursors = [_send(connection, set_wise, rows) for set_wise, rows in statements]
            connection.commit()
    else:
        cursors = [_send(connection, set_wise, rows) for set_wise, rows in statements]
        connection.commit()
    found: list[AcceptRow | None] = []
    for cursor in cursors:
        found.extend(None if row[0] is None else AcceptRow(*row) for row in cursor.fetchall())
    return found


def _send(connection: psycopg.Connection[Any], set_wise: bool, rows: list[AcceptInput]) -> psycopg.Cursor[Any]:
    if set_wise:
        # A raw cursor sends the text as written ($1, $2): psycopg converts placeholders of texts over 4 KiB anew
        # on every execution.
        import psycopg  # noqa: PLC0415 - loaded with the Postgres dialect; a SQLite process never needs it

        return psycopg.RawCursor(connection).execute(ACCEPT_ROWS, _parameters_of(rows))
    return connection.execute(ACCEPT_FOR_DRIVER, parameters_of(rows[0]))
