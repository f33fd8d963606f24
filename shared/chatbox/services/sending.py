"""Sending as the agent: recorded first (`OutboundSend`, status `sending`), then through the chat's connector.

Every send is recorded before the platform call, so a crash between the platform's answer and the commit
leaves a `sending` record that the next call with the same idempotency key reconciles (it asks the connector
to find out, `OutboundMessage.uncertain_since`) instead of sending blindly again. The chat's history (recaps,
read_chat, list_chats) shows only what the other side is known to have received: the outbound `Message` is
written when the send turns `sent`; a `failed` or `unknown` send stays in `outbound_sends` only.

Idempotency: the same `idempotency_key` on the same mailbox within 24 hours never makes a second platform
message. It answers the first send's result; waits (bounded) while that send is in flight; retries a failed
send from its first missing part; and re-asks the connector about an unknown one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.errors import (
    ConflictError,
    ConnectorError,
    ConnectorUnavailableError,
    InvalidInputError,
    NoFocusError,
    UnknownOutcomeError,
)
from chatbox.domain.ids import new_id
from chatbox.domain.schemas import ConnectionStatus
from chatbox.domain.untrusted import MAX_TEXT
from chatbox.domain.vault import Vault
from chatbox.ports.connector import ConnectionContext, Connector, OutboundMessage, SentMessage
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.connections import connection_context, report_connection_error
from chatbox.services.focus import find_chat
from chatbox.services.mailboxes import get_mailbox_any_account, require_live_mailbox
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Chat, Connection, Mailbox, Message, OutboundSend
from chatbox.store.types import utcnow

MAX_IDEMPOTENCY_KEY = 255
KEY_LIFETIME = timedelta(hours=24)
# A `sending` record older than this has no live attempt behind it (the process died mid-send): the next
# call with its key reconciles it. Longer than any one attempt (each part's timeout, a short 429 wait).
SENDING_LEASE = timedelta(minutes=2)
IN_FLIGHT_WAIT = 20.0  # seconds a call with the key of a send in flight waits for its outcome
_POLL = 0.1


class SendStatus:
    sending = "sending"
    sent = "sent"
    failed = "failed"
    unknown = "unknown"


@dataclass(frozen=True)
class SendReceipt:
    """A send that went out and was recorded."""

    message_id: str  # chatbox's id of the stored outbound message
    external_id: str  # the platform's id of the sent message (its first part)
    chat_id: str  # the chat address
    part_ids: tuple[str, ...] = ()  # the platform ids of every part, in order
    replayed: bool = False  # an earlier send with the same idempotency key answered, nothing new was posted


def _target_chat(db: Session, mailbox: Mailbox, address: str | None) -> Chat:
    if address is not None:
        return find_chat(db, mailbox.id, address)
    if mailbox.focal_chat_id is None:
        raise NoFocusError("no focal chat: pass chat_id, or call switch_chat first (list_chats shows the chat ids)")
    chat = db.get(Chat, mailbox.focal_chat_id)
    if chat is None:
        raise NoFocusError("the focal chat no longer exists: call list_chats and switch_chat")
    return chat


def _carrying_connection(db: Session, mailbox: Mailbox, chat: Chat) -> Connection:
    """The connection to send to `chat` on: its own, or, when that was archived, the mailbox's active connection
    of the same platform (the chat follows it once a send through it succeeded)."""
    connection = db.get(Connection, chat.connection_id)
    if connection is not None and connection.status == ConnectionStatus.active:
        return connection
    successor = db.scalar(
        select(Connection).where(
            Connection.mailbox_id == mailbox.id,
            Connection.platform == chat.platform,
            Connection.status == ConnectionStatus.active,
        )
    )
    if successor is None:
        raise ConflictError(
            f"the {chat.platform} connection of {chat.address} is archived and the mailbox has no active "
            f"{chat.platform} connection; this chat can no longer be answered from this mailbox"
        )
    return successor


def send_message(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    mailbox_id: str,
    text: str,
    *,
    chat: str | None = None,
    reply_to: str | None = None,
    platform: str | None = None,
    options: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    in_flight_wait: float = IN_FLIGHT_WAIT,
) -> SendReceipt:
    """Send `text` to the chat at address `chat` (default: the focal chat) and store it as outbound.

    `platform`, when given, requires the chat to be on that platform (the `<platform>_send` tools).
    `options` are platform options passed to the connector as they are. `idempotency_key` makes retries safe
    (see the module docstring).

    Raises:
        NoFocusError: no `chat` given and no focal chat.
        InvalidInputError / NotFoundError: an empty text, a malformed or unknown chat, a platform mismatch, a key
            reused with other arguments.
        ConflictError: the mailbox is archived, or the chat's connection is and no active one of its platform
            replaced it.
        UnknownOutcomeError: the platform may or may not have posted it (or the same key's send is still in flight).
        ConnectorUnavailableError, PlatformRefusedError, RateLimitedError: from the connector (`parts_sent` says
            which parts of a long text went out before).
    """
    if not text.strip():
        raise InvalidInputError("text is empty: write the message to send")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(f"text is longer than {MAX_TEXT} characters; split it into several messages")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInputError(f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target_chat = _target_chat(db, mailbox, chat)
    if platform is not None and target_chat.platform != platform:
        raise InvalidInputError(
            f"{target_chat.address} is a {target_chat.platform} chat; use {target_chat.platform}_send or send_message"
        )
    connection = _carrying_connection(db, mailbox, target_chat)
    connector = platforms.connector(target_chat.platform)
    send_options = dict(options or {})
    digest = _digest(target_chat.id, text, reply_to, _non_default(platforms, target_chat.platform, send_options))
    record, fresh = _claim(db, mailbox, idempotency_key, digest, target_chat, connection, text, reply_to, send_options)
    uncertain_since: float | None = None
    while not fresh:
        record = _settled(db, record, in_flight_wait)
        if record.status == SendStatus.sent:
            return _receipt(record, target_chat, replayed=True)
        # `unknown`, or `sending` with no live attempt: the next part may have gone out; the connector checks.
        uncertain = record.status != SendStatus.failed
        uncertain_since = record.attempt_started_at.timestamp() if uncertain else None
        fresh = _take_over(db, record, connection)
    return _attempt(db, vault, connector, record, target_chat, connection, mailbox.name, uncertain_since)


def _take_over(db: Session, record: OutboundSend, connection: Connection) -> bool:
    """Start a new attempt at `record` unless a concurrent call just did (compare-and-set on its state), so two
    retries of one send never both call the platform. False: the caller waits for the other attempt."""
    seen_status, seen_started = record.status, record.attempt_started_at
    taken = db.execute(
        update(OutboundSend)
        .where(
            OutboundSend.id == record.id,
            OutboundSend.status == seen_status,
            OutboundSend.attempt_started_at == seen_started,
        )
        .values(status=SendStatus.sending, attempt_started_at=utcnow(), connection_id=connection.id)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    db.refresh(record)
    return bool(getattr(taken, "rowcount", 0) == 1)


def _non_default(platforms: PlatformRegistry, platform: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` without those at their default, so send_message and `<platform>_send` with its defaults are the
    same message for a reused key."""
    try:
        defaults = platforms.spec(platform).send_options().model_dump()
    except ValidationError:  # an options model with required fields has no defaults to drop
        defaults = {}
    missing = object()
    return {name: value for name, value in options.items() if defaults.get(name, missing) != value}


def _digest(chat_id: str, text: str, reply_to: str | None, options: Mapping[str, Any]) -> str:
    """What "the same arguments" means for a reused key: the chat, the text, the reply and the options."""
    canonical = json.dumps([chat_id, text, reply_to, options], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _claim(
    db: Session,
    mailbox: Mailbox,
    key: str | None,
    digest: str,
    chat: Chat,
    connection: Connection,
    text: str,
    reply_to: str | None,
    options: dict[str, Any],
    *,
    compared: str = "message (chat, text, reply_to or options differ)",
) -> tuple[OutboundSend, bool]:
    """The send record for this call: a new one committed as `sending` (True), or the key's earlier one (False).
    `compared` says, in the error for a reused key, what differs.

    Raises:
        InvalidInputError: the key was used on this mailbox within 24 h for other arguments.
    """
    for _ in range(3):  # a concurrent first use of the same key wins the insert; this call then reads it
        if key is not None:
            earlier = db.scalar(
                select(OutboundSend).where(OutboundSend.mailbox_id == mailbox.id, OutboundSend.idempotency_key == key)
            )
            if earlier is not None and earlier.created_at <= utcnow() - KEY_LIFETIME:
                earlier.idempotency_key = None  # expired: the key is free for a new send
                db.commit()
                earlier = None
            if earlier is not None:
                if earlier.request_digest != digest:
                    raise InvalidInputError(
                        f"idempotency_key {key!r} was already used on this mailbox for a different {compared}; "
                        "use a new key for a new message"
                    )
                return earlier, False
        now = utcnow()
        record = OutboundSend(
            id=new_id("send"),
            mailbox_id=mailbox.id,
            idempotency_key=key,
            request_digest=digest,
            chat_id=chat.id,
            connection_id=connection.id,
            status=SendStatus.sending,
            text=text,
            reply_to=reply_to,
            options=options,
            parts_sent=[],
            parts_total=0,
            attempt_started_at=now,
            created_at=now,
            updated_at=now,
        )
        db.add(record)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            continue
        return record, True
    raise ConflictError(f"idempotency_key {key!r} is being claimed by concurrent calls; call again")


def _settled(db: Session, record: OutboundSend, wait: float) -> OutboundSend:
    """`record` once no live attempt holds it: waits (up to `wait` s) while another call is sending it.

    Raises:
        UnknownOutcomeError: still in flight after the wait.
    """
    deadline = time.monotonic() + wait
    record_id = record.id
    while True:
        if record.status != SendStatus.sending or record.attempt_started_at <= utcnow() - SENDING_LEASE:
            return record
        if time.monotonic() >= deadline:
            raise UnknownOutcomeError(
                f"the send with idempotency_key {record.idempotency_key!r} is still in flight (started "
                f"{record.attempt_started_at:%H:%M:%S} UTC); call again with the same key to get its outcome"
            )
        db.rollback()  # ends the read transaction: the next read sees the other call's commit
        time.sleep(_POLL)
        current = db.get(OutboundSend, record_id, populate_existing=True)
        assert current is not None  # send records are never deleted
        record = current


def _attempt(
    db: Session,
    vault: Vault,
    connector: Connector,
    record: OutboundSend,
    chat: Chat,
    connection: Connection,
    sender_name: str,
    uncertain_since: float | None,
) -> SendReceipt:
    ctx: ConnectionContext = connection_context(db, vault, connection)
    message = OutboundMessage(
        chat.external_id,
        record.text,
        record.reply_to,
        dict(record.options),
        send_id=record.id,
        parts_sent=tuple(record.parts_sent),
        uncertain_since=uncertain_since,
    )
    # The record is committed (`sending`): whatever happens on the network, the send is known to have started.
    release_before_network_call(db)
    try:
        sent = connector.send(ctx, message)
    except ConnectorError as exc:
        _record_failure(db, record, exc)
        if isinstance(exc, ConnectorUnavailableError) and not exc.parts_sent:
            # The token refused or the connector down: integrators hear of it (`connection_error`), the agent from
            # the error itself.
            report_connection_error(db, connection, exc.message)
        raise
    return _record_sent(db, record, chat, connection, sender_name, sent)


def _record_failure(db: Session, record: OutboundSend, exc: ConnectorError) -> None:
    """Store what is known after a failed or unanswered attempt, and say it in the error the agent reads."""
    known = list(exc.parts_sent) if len(exc.parts_sent) >= len(record.parts_sent) else list(record.parts_sent)
    record.parts_sent = known
    record.parts_total = exc.parts_total or record.parts_total
    record.status = SendStatus.unknown if isinstance(exc, UnknownOutcomeError) else SendStatus.failed
    record.error_code = exc.code
    record.error = exc.message
    db.commit()
    if record.parts_total > 1 and known:
        exc.message = (
            f"{exc.message} ({len(known)} of {record.parts_total} parts went out, ids {', '.join(known)}; "
            f"part {len(known) + 1} did not"
            + (
                ", and calling again with the same idempotency_key sends only the missing parts)"
                if record.idempotency_key
                else ")"
            )
        )
        exc.args = (exc.message,)


def _record_sent(
    db: Session, record: OutboundSend, chat: Chat, connection: Connection, sender_name: str, sent: SentMessage
) -> SendReceipt:
    external_id = sent.external_id
    now = utcnow()
    message = Message(
        id=new_id("message"),
        chat_id=chat.id,
        connection_id=connection.id,
        direction="out",
        external_id=external_id,
        sender_id=None,
        sender_name=sender_name,
        text=record.text,
        attachments=[],
        reply_to_external_id=record.reply_to,
        event_type="message",
        sent_at=now,
        received_at=now,
    )
    db.add(message)
    record.status = SendStatus.sent
    record.message_id = message.id
    record.parts_sent = list(sent.parts)
    record.parts_total = len(sent.parts)
    record.error_code = record.error = None
    chat.last_activity_at = now
    chat.connection_id = connection.id
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            f"the platform reported message id {external_id}, which this connection already used; "
            "the message was sent but not recorded"
        ) from exc
    return _receipt(record, chat, replayed=False)


def _receipt(record: OutboundSend, chat: Chat, *, replayed: bool) -> SendReceipt:
    parts = tuple(record.parts_sent)
    assert record.message_id is not None and parts  # a `sent` record names its message and parts
    return SendReceipt(
        message_id=record.message_id, external_id=parts[0], chat_id=chat.address, part_ids=parts, replayed=replayed
    )
