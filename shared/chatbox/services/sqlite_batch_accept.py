"""Accepting a group commit's batch on SQLite: every caller's messages written in one transaction, on the raw
connection (`chatbox.store.sqlite_accept`), with as few statements as the batch allows.

The answers equal `chatbox.services.inbound.accept_inbound`'s for each accept run alone, in the batch's order:
- each connection is read once; a request whose connection is unknown or not active, whose token is not the
  connection's, or whose mailbox is archived gets its error (AuthenticationError, ConflictError) and writes
  nothing, without failing the others;
- the copies of stored messages are found with one query per connection, and a copy of a message earlier in
  the batch answers with that message's id: copies write nothing;
- each chat the batch's new messages go to is upserted once (their unread count, last name, last given type),
  and one `new_chat` service event is written per chat the batch created;
- an edit keeps the text its target had before it (`previous_text`) and an edit or deletion marks its target,
  in order, so an edit of a message earlier in the same batch sees it;
- each new message gets its delivery, held when the mailbox is paused; the others' jobs are written to the
  local queue's table, all of them in one statement (a queue outside the database sends after the commit: such
  a batch raises BatchConflictError and its accepts run alone).

Whatever else goes wrong raises, and the group commit rolls the batch back and runs its accepts one by one.
"""

from __future__ import annotations

import copy
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chatbox.domain.errors import AuthenticationError, ConflictError
from chatbox.domain.ids import is_valid_id, new_id, token_matches
from chatbox.domain.normalized import AcceptResult, ChatType, InboundMessage
from chatbox.domain.schemas import ConnectionStatus, DeliveryStatus, MailboxStatus
from chatbox.ports import metrics
from chatbox.ports.queue import DeliveryJob, DeliveryQueue, InDatabaseQueue
from chatbox.store.sqlite_accept import (
    ChatTouch,
    DeliveryRow,
    EventRow,
    MessageRow,
    QueueRow,
    TargetRow,
    insert_deliveries,
    insert_messages,
    insert_new_chat_events,
    insert_queue_rows,
    mark_deleted,
    mark_edited,
    read_target,
    sqlite_datetime,
    sqlite_json,
    stored_copies,
    text_before_edit,
    upsert_chat,
)
from chatbox.store.types import utcnow

_INVALID = "invalid inbound token for this connection"
_NO_ATTACHMENTS = sqlite_json([])
_NO_REACTION = sqlite_json(None)
_ACTIVE = ConnectionStatus.active.value
_PAUSED = MailboxStatus.paused.value
_ARCHIVED = MailboxStatus.archived.value
_HELD = DeliveryStatus.held.value
_PENDING = DeliveryStatus.pending.value
_DIRECT = ChatType.direct.value


class BatchConflictError(Exception):
    """An accept cannot finish inside the batch (an external queue's send must follow its commit): the batch is
    rolled back and its accepts run one by one."""


@dataclass(frozen=True)
class AcceptRequest:
    """One caller's accept: messages of one connection, with the token it presented (None: already checked)."""

    connection_id: str
    messages: Sequence[InboundMessage]
    token: str | None


# (True, the caller's list[AcceptResult]) or (False, the error to raise to it)
Outcome = tuple[bool, Any]


@dataclass
class _Chat:
    """A chat the batch writes to, gathered over its new messages."""

    key: tuple[str, str, str]  # mailbox, platform, external chat id
    target: TargetRow
    connection_id: str
    first: InboundMessage  # the message that opens the chat, if the batch creates it
    first_connection_id: str
    name: str | None = None
    type: str | None = None
    unread: int = 0
    id: str = ""
    created: bool = False


@dataclass
class _New:
    message: InboundMessage
    message_id: str
    connection_id: str
    chat: _Chat
    held: bool


@dataclass
class _Plan:
    outcomes: list[Outcome] = field(default_factory=list)
    chats: dict[tuple[str, str, str], _Chat] = field(default_factory=dict)
    new: list[_New] = field(default_factory=list)
    platforms: list[tuple[str, bool]] = field(default_factory=list)  # per message: platform, duplicate


def accept_batch(
    raw: sqlite3.Connection, requests: Sequence[AcceptRequest], *, table_queue: str | None
) -> list[Outcome]:
    """Write the accepts of `requests` in `raw`'s transaction (the caller holds the write lock and commits);
    one outcome per request, in order.

    Args:
        table_queue: the name of the delivery queue when it keeps its jobs in the database's `queue_messages`
            table (an `InDatabaseQueue`, `table_queue_of`): their rows are written here, and the caller wakes the
            queue after the commit. None: a queue outside the database sends its jobs after the commit, so a batch
            with jobs raises BatchConflictError (its accepts run alone, and `accept_inbound` sends them).
    """
    started = time.perf_counter()
    now = sqlite_datetime(utcnow())
    plan = _plan(raw, requests)
    for chat in plan.chats.values():
        touch = _touch(chat, now)
        chat.id = upsert_chat(raw, touch)
        chat.created = chat.id == touch.fresh_id
    _write_messages(raw, plan.new, now)
    jobs = [
        None if item.held else DeliveryJob(delivery_id=new_id("delivery"), group_id=item.chat.id) for item in plan.new
    ]
    staged = _stage(raw, table_queue, [job for job in jobs if job is not None], now)
    insert_deliveries(raw, [_delivery_row(item, job, staged, now) for item, job in zip(plan.new, jobs, strict=True)])
    insert_new_chat_events(raw, [_event_row(chat, now) for chat in plan.chats.values() if chat.created])
    _count(plan, time.perf_counter() - started)
    return plan.outcomes


def _plan(raw: sqlite3.Connection, requests: Sequence[AcceptRequest]) -> _Plan:
    """Admit each request, tell copies from new messages, and gather the chats the new ones go to."""
    plan = _Plan()
    targets: dict[str, TargetRow | None] = {}
    # The callers of a batch mostly present the same connection and token: each pair is checked once.
    admissions: dict[tuple[str, str | None], TargetRow | Exception] = {}
    admitted: list[tuple[AcceptRequest, TargetRow, list[AcceptResult]]] = []
    for request in requests:
        key = (request.connection_id, request.token)
        admission = admissions.get(key)
        if admission is None:
            admission = admissions[key] = _admit(raw, targets, request.connection_id, request.token)
        if isinstance(admission, Exception):
            # Each caller raises an error of its own (one raised in two tasks would share its traceback).
            plan.outcomes.append((False, copy.copy(admission)))
            continue
        results: list[AcceptResult] = []
        admitted.append((request, admission, results))
        plan.outcomes.append((True, results))
    known = _known_copies(raw, admitted)
    for request, target, results in admitted:
        held = target.mailbox_status == _PAUSED
        for message in request.messages:
            address = f"{target.platform}:{message.external_chat_id}"
            key = (request.connection_id, message.external_message_id)
            existing = known.get(key)
            plan.platforms.append((target.platform, existing is not None))
            if existing is not None:
                results.append(AcceptResult(message_id=existing, chat_id=address, duplicate=True))
                continue
            message_id = new_id("message")
            known[key] = message_id
            chat = _gather_chat(plan, target, request.connection_id, message)
            plan.new.append(_New(message, message_id, request.connection_id, chat, held))
            results.append(AcceptResult(message_id=message_id, chat_id=address, duplicate=False))
    return plan


def _admit(
    raw: sqlite3.Connection, targets: dict[str, TargetRow | None], connection_id: str, token: str | None
) -> TargetRow | Exception:
    """The connection to accept on, or the error its caller gets (`accept_inbound`'s, whatever the reason)."""
    if connection_id not in targets:
        targets[connection_id] = read_target(raw, connection_id) if is_valid_id("connection", connection_id) else None
    target = targets[connection_id]
    if target is None or target.status != _ACTIVE:
        return AuthenticationError(_INVALID)
    if token is not None and not token_matches(token, target.inbound_token_hash):
        return AuthenticationError(_INVALID)
    if target.mailbox_status == _ARCHIVED:
        return ConflictError(f"mailbox {target.mailbox_id} is archived; it accepts no messages")
    return target


def _known_copies(
    raw: sqlite3.Connection, admitted: list[tuple[AcceptRequest, TargetRow, list[AcceptResult]]]
) -> dict[tuple[str, str], str]:
    wanted: dict[str, set[str]] = {}
    for request, _, _ in admitted:
        wanted.setdefault(request.connection_id, set()).update(m.external_message_id for m in request.messages)
    known: dict[tuple[str, str], str] = {}
    for connection_id, external_ids in wanted.items():
        for external_id, message_id in stored_copies(raw, connection_id, sorted(external_ids)).items():
            known[(connection_id, external_id)] = message_id
    return known


def _gather_chat(plan: _Plan, target: TargetRow, connection_id: str, message: InboundMessage) -> _Chat:
    key = (target.mailbox_id, target.platform, message.external_chat_id)
    chat = plan.chats.get(key)
    if chat is None:
        chat = plan.chats[key] = _Chat(key, target, connection_id, message, connection_id)
    # In order, as one upsert per message would leave it: the last carrier, name and given type win.
    chat.connection_id = connection_id
    if message.chat_name is not None:
        chat.name = message.chat_name
    if message.chat_type is not None:
        chat.type = message.chat_type.value
    if message.event_type == "message":
        chat.unread += 1
    return chat


def _touch(chat: _Chat, now: str) -> ChatTouch:
    mailbox_id, platform, external_id = chat.key
    return ChatTouch(
        fresh_id=new_id("chat"),
        connection_id=chat.connection_id,
        mailbox_id=mailbox_id,
        platform=platform,
        external_id=external_id,
        name=chat.name,
        type=chat.type or _DIRECT,
        type_given=chat.type is not None,
        unread=chat.unread,
        focal_chat_id=chat.target.focal_chat_id,
        now=now,
    )


def _write_messages(raw: sqlite3.Connection, new: list[_New], now: str) -> None:
    """Insert the new messages in one statement, but in order around an edit or a deletion: those read and
    change their target, which may be a message of the same batch."""
    pending: list[MessageRow] = []
    for item in new:
        message = item.message
        target_id = message.target_external_id
        marks = target_id is not None and message.event_type in ("edit", "delete")
        if not marks:
            pending.append(_message_row(item, now, None))
            continue
        assert target_id is not None  # noqa: S101 - `marks` says so
        insert_messages(raw, pending)
        pending = []
        chat_id = item.chat.id
        previous = text_before_edit(raw, chat_id, target_id) if message.event_type == "edit" else None
        insert_messages(raw, [_message_row(item, now, previous)])
        if message.event_type == "edit":
            attachments = sqlite_json(message.attachments_json()) if message.attachments else None
            mark_edited(raw, chat_id, target_id, message.text, attachments, now)
        else:
            mark_deleted(raw, chat_id, target_id, now)
    insert_messages(raw, pending)


def _message_row(item: _New, now: str, previous_text: str | None) -> MessageRow:
    message = item.message
    return (
        item.message_id,
        item.chat.id,
        item.connection_id,
        message.external_message_id,
        message.sender_id,
        message.sender_name,
        message.text,
        sqlite_json(message.attachments_json()) if message.attachments else _NO_ATTACHMENTS,
        message.reply_to_external_id,
        message.event_type,
        None if message.sent_at is None else sqlite_datetime(message.sent_at),
        now,
        message.target_external_id,
        _NO_REACTION if message.reaction is None else sqlite_json(message.reaction.model_dump()),
        previous_text,
    )


def table_queue_of(queue: DeliveryQueue) -> str | None:
    """The queue's name when it keeps its jobs in the database's own table (ask once: a runtime protocol check
    costs more than a small batch's statements)."""
    return queue.queue if isinstance(queue, InDatabaseQueue) else None


def _stage(raw: sqlite3.Connection, table_queue: str | None, jobs: list[DeliveryJob], now: str) -> bool:
    """Put the jobs in the queue within the transaction; True when they are (their deliveries are enqueued)."""
    if not jobs:
        return False
    if table_queue is None:
        raise BatchConflictError("an external queue's send waits for the commit: accept alone")
    # The local queue's rows, written here as its `stage` would (its consumer is woken after the commit).
    rows: list[QueueRow] = [(table_queue, job.group_id, job.delivery_id, job.body(), now, now) for job in jobs]
    insert_queue_rows(raw, rows)
    return True


def _delivery_row(item: _New, job: DeliveryJob | None, staged: bool, now: str) -> DeliveryRow:
    status = _HELD if item.held else _PENDING
    delivery_id = new_id("delivery") if job is None else job.delivery_id
    enqueued_at = now if job is not None and staged else None
    return (
        delivery_id,
        item.message_id,
        item.chat.target.mailbox_id,
        item.chat.id,
        status,
        enqueued_at,
        now,
        now,
    )


def _event_row(chat: _Chat, now: str) -> EventRow:
    mailbox_id, platform, external_id = chat.key
    data = {
        "chat_id": f"{platform}:{external_id}",
        "name": chat.first.chat_name,
        "connection_id": chat.first_connection_id,
    }
    return (new_id("event"), chat.target.account_id, mailbox_id, sqlite_json(data), now)


def _count(plan: _Plan, elapsed: float) -> None:
    """The accept metrics, as one accept at a time records them: a count per message and outcome, and each
    message's share of the batch's time."""
    if not plan.platforms:
        return
    share = elapsed / len(plan.platforms)
    tallies: dict[tuple[str, str], int] = {}
    for platform, duplicate in plan.platforms:
        labels = (platform, "duplicate" if duplicate else "accepted")
        tallies[labels] = tallies.get(labels, 0) + 1
        metrics.observe(metrics.ACCEPT_SECONDS, share, (platform,))
    for labels, amount in tallies.items():
        metrics.count(metrics.INBOUND_MESSAGES, labels, amount)
