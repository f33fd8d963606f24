"""Media both ways: open an inbound attachment from its platform on demand, and send a file as the agent.

Nothing is cached: an attachment is fetched from its platform each time it is asked for and streamed to the
caller, never more than `CHATBOX_ATTACHMENT_MAX_BYTES` (a larger one is refused before its bytes are read
when the platform declares its size, and cut off when it does not). Attachment ids and links:
`chatbox.domain.attachments`. The platform side: `chatbox.ports.media`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatbox.domain.attachments import (
    LINK_KEY_PURPOSE,
    LinkSigner,
    normal_kind,
    parse_attachment_id,
    present_attachment,
)
from chatbox.domain.errors import (
    ConflictError,
    ConnectorError,
    ConnectorUnavailableError,
    InvalidInputError,
    NotFoundError,
    UnknownOutcomeError,
)
from chatbox.domain.ids import new_id
from chatbox.domain.settings import Settings
from chatbox.domain.vault import Vault
from chatbox.ports.media import (
    FetchedFile,
    FileRef,
    MediaConnector,
    OutboundFile,
    UploadLimit,
    check_declared_size,
    media_connector,
)
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.connections import connection_context, report_connection_error
from chatbox.services.mailboxes import get_mailbox_any_account, require_live_mailbox
from chatbox.services.sending import (
    IN_FLIGHT_WAIT,
    MAX_IDEMPOTENCY_KEY,
    SendStatus,
    _carrying_connection,
    _claim,
    _record_failure,
    _settled,
    _take_over,
    _target_chat,
)
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Chat, Connection, Message, OutboundSend
from chatbox.store.types import utcnow

MAX_FILENAME = 255
MAX_CAPTION = 1024  # Telegram's caption limit, the smallest of the four platforms'


def link_signer(settings: Settings, vault: Vault) -> LinkSigner:
    """The deployment's attachment link signer (CHATBOX_PUBLIC_URL, CHATBOX_ATTACHMENT_LINK_SECONDS)."""
    return LinkSigner(vault.derived_key(LINK_KEY_PURPOSE), settings.public_url, settings.attachment_link_seconds)


@dataclass(frozen=True)
class LocatedAttachment:
    message: Message
    chat: Chat
    index: int
    stored: Mapping[str, Any]

    @property
    def mailbox_id(self) -> str:
        return self.chat.mailbox_id

    def shown(self) -> dict[str, Any]:
        return present_attachment(self.message.id, self.index, self.stored, None, 0)


def locate_attachment(db: Session, attachment_id: str, *, mailbox_id: str | None = None) -> LocatedAttachment:
    """The stored attachment with this id (in `mailbox_id`'s chats, when given).

    Raises NotFoundError for a malformed id, an unknown one, or one of another mailbox (the same answer: an id
    of another mailbox is not confirmed to exist)."""
    parsed = parse_attachment_id(attachment_id)
    message = db.get(Message, parsed[0]) if parsed is not None else None
    chat = db.get(Chat, message.chat_id) if message is not None else None
    if (
        parsed is None
        or message is None
        or chat is None
        or parsed[1] >= len(message.attachments)
        or (mailbox_id is not None and chat.mailbox_id != mailbox_id)
    ):
        raise NotFoundError(
            "no attachment of this mailbox has that id; attachment ids (`att_…`) are in webhook bodies and read_chat"
        )
    return LocatedAttachment(message, chat, parsed[1], message.attachments[parsed[1]])


def _media_of(platforms: PlatformRegistry, platform: str) -> MediaConnector:
    media = media_connector(platforms.connector(platform))
    if media is None:
        raise ConnectorUnavailableError(f"chatbox cannot handle files on {platform} from this deployment")
    return media


def open_attachment(
    db: Session, vault: Vault, platforms: PlatformRegistry, located: LocatedAttachment, *, max_bytes: int
) -> FetchedFile:
    """Start fetching the attachment from its platform; the caller streams and closes the result.

    Raises:
        AttachmentTooLargeError: its stored or declared size is over `max_bytes` (reading past it raises too).
        NotFoundError: the platform no longer has it.
        ConnectorUnavailableError, RateLimitedError, PlatformRefusedError: from the platform.
    """
    ref = FileRef.of(located.stored)
    what = f"attachment {located.shown()['id']}"
    check_declared_size(ref.size, max_bytes, what)
    connection = db.get(Connection, located.message.connection_id)
    if connection is None:  # pragma: no cover - a message keeps its connection (foreign key)
        raise NotFoundError("the attachment's connection no longer exists")
    media = _media_of(platforms, connection.platform)
    ctx = connection_context(db, vault, connection)
    release_before_network_call(db)
    fetched = media.fetch_attachment(ctx, ref, max_bytes=max_bytes)
    try:
        check_declared_size(fetched.size, max_bytes, what)
    except Exception:
        fetched.close()
        raise
    if fetched.mime_type is None and ref.mime_type is not None:
        fetched.mime_type = ref.mime_type
    return fetched


@dataclass(frozen=True)
class FileReceipt:
    """A file that went out and was recorded."""

    message_id: str
    external_id: str
    chat_id: str
    attachment_id: str
    replayed: bool = False  # an earlier send with the same idempotency key answered, nothing new was posted


def check_file_arguments(filename: str, caption: str | None) -> None:
    if not filename.strip() or "/" in filename or "\\" in filename or len(filename) > MAX_FILENAME:
        raise InvalidInputError(f"filename must be a plain file name (no path) of 1-{MAX_FILENAME} characters")
    if caption is not None and len(caption) > MAX_CAPTION:
        raise InvalidInputError(f"caption is longer than {MAX_CAPTION} characters; send the rest as a message")


def upload_limit(
    db: Session, vault: Vault, platforms: PlatformRegistry, mailbox_id: str, chat: str | None, mime_type: str
) -> tuple[str, UploadLimit]:
    """(chat address, what its platform takes) for a file the agent is about to send: checked before a URL is
    downloaded, so a file too large is refused before it is fetched."""
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target = _target_chat(db, mailbox, chat)
    connection = _carrying_connection(db, mailbox, target)
    media = _media_of(platforms, target.platform)
    return target.address, media.upload_limit(connection_context(db, vault, connection), mime_type)


def send_file(
    db: Session,
    vault: Vault,
    platforms: PlatformRegistry,
    mailbox_id: str,
    *,
    chat: str | None,
    filename: str,
    data: bytes,
    mime_type: str,
    caption: str | None = None,
    reply_to: str | None = None,
    idempotency_key: str | None = None,
    source_url: str | None = None,
    in_flight_wait: float = IN_FLIGHT_WAIT,
) -> FileReceipt:
    """Send a file to the chat at address `chat` (default: the focal chat) and store it as an outbound message
    with its attachment.

    Recorded first as an `OutboundSend` like `chatbox.services.sending.send_message`, so `idempotency_key`
    makes retries safe: within 24 h the same key on the mailbox answers the first file's result with nothing
    posted, waits (bounded) while that send is in flight, and retries one that failed. `source_url` (the url
    the bytes were downloaded from) stands for the bytes in the key's fingerprint: a retry names the same url,
    and a url that serves other bytes on the second download (a dated report, a resized image) is still the
    same file the agent asked for.

    Raises:
        InvalidInputError: a bad filename or caption, an empty file, a key reused for another file.
        AttachmentTooLargeError: over the platform's limit (nothing was sent).
        NoFocusError, NotFoundError, ConflictError: as `chatbox.services.sending.send_message`.
        UnknownOutcomeError: the upload left and got no answer (or an earlier one with the same key did, or it
            is still in flight): the file may or may not have been posted.
        ConnectorUnavailableError, PlatformRefusedError, RateLimitedError: from the connector.
    """
    check_file_arguments(filename, caption)
    if not data:
        raise InvalidInputError("the file is empty")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInputError(f"idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target = _target_chat(db, mailbox, chat)
    connection = _carrying_connection(db, mailbox, target)
    media = _media_of(platforms, target.platform)
    ctx = connection_context(db, vault, connection)
    limit = media.upload_limit(ctx, mime_type)
    check_declared_size(len(data), limit.max_bytes, f"{filename} ({target.platform}{limit.note})")
    source = {"url": source_url} if source_url is not None else {"sha256": hashlib.sha256(data).hexdigest()}
    fingerprint = {"filename": filename, "mime_type": mime_type, **source}
    record, fresh = _claim(
        db,
        mailbox,
        idempotency_key,
        _file_digest(target.id, caption, reply_to, fingerprint),
        target,
        connection,
        caption or "",
        reply_to,
        {"file": fingerprint},
        compared="file (chat, filename, file contents or url, mime_type, caption or reply_to differ)",
    )
    while not fresh:
        record = _settled(db, record, in_flight_wait)
        if record.status == SendStatus.sent:
            return _replayed(db, record, target)
        if record.status != SendStatus.failed:
            # `unknown`, or `sending` with no live attempt behind it: no platform lets chatbox look an upload up.
            raise UnknownOutcomeError(
                f"the file sent with idempotency_key {record.idempotency_key!r} got no answer from "
                f"{target.platform}: it may or may not have been posted, and chatbox cannot tell; check the chat "
                "(read_chat) before sending it again under a new key"
            )
        fresh = _take_over(db, record, connection)
    release_before_network_call(db)
    file = OutboundFile(target.external_id, filename, data, mime_type, caption or None, reply_to)
    try:
        sent = media.send_file(ctx, file)
    except ConnectorError as exc:
        _record_failure(db, record, exc)
        if isinstance(exc, ConnectorUnavailableError):
            report_connection_error(db, connection, exc.message)
        raise
    now = utcnow()
    attachment: dict[str, Any] = {
        "kind": normal_kind(None, mime_type),
        "mime_type": mime_type[:255],
        "name": filename,
        "size": len(data),
    }
    if sent.file_id:
        attachment["file_id"] = sent.file_id[:512]
    if sent.url:
        attachment["url"] = sent.url[:2048]
    if not sent.file_id and not sent.url:
        # Nothing to fetch it back by: the platform keeps the file on the message only.
        attachment["file_id"] = f"sent:{sent.external_id}"[:512]
    message = Message(
        id=new_id("message"),
        chat_id=target.id,
        connection_id=connection.id,
        direction="out",
        external_id=sent.external_id,
        sender_id=None,
        sender_name=mailbox.name,
        text=caption or None,
        attachments=[attachment],
        reply_to_external_id=reply_to,
        event_type="message",
        sent_at=now,
        received_at=now,
    )
    db.add(message)
    record.status = SendStatus.sent
    record.message_id = message.id
    record.parts_sent = [sent.external_id]
    record.parts_total = 1
    record.error_code = record.error = None
    target.last_activity_at = now
    target.connection_id = connection.id
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            f"the platform reported message id {sent.external_id}, which this connection already used; "
            "the file was sent but not recorded"
        ) from exc
    shown = present_attachment(message.id, 0, attachment, None, 0)
    return FileReceipt(message.id, sent.external_id, target.address, shown["id"])


def _file_digest(chat_id: str, caption: str | None, reply_to: str | None, fingerprint: Mapping[str, Any]) -> str:
    """What "the same arguments" means for a reused key on a file; tagged, so a send_message never matches it."""
    canonical = json.dumps(["file", chat_id, caption or None, reply_to, fingerprint], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replayed(db: Session, record: OutboundSend, chat: Chat) -> FileReceipt:
    message = db.get(Message, record.message_id) if record.message_id else None
    assert message is not None and record.parts_sent  # a `sent` record names its stored message
    shown = present_attachment(message.id, 0, message.attachments[0], None, 0)
    return FileReceipt(message.id, record.parts_sent[0], chat.address, shown["id"], replayed=True)
