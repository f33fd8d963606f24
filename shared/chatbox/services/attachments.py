"""Media both ways: open an inbound attachment from its platform on demand, and send a file as the agent.

Nothing is cached: an attachment is fetched from its platform each time it is asked for and streamed to the
caller, never more than `CHATBOX_ATTACHMENT_MAX_BYTES` (a larger one is refused before its bytes are read
when the platform declares its size, and cut off when it does not). Attachment ids and links:
`chatbox.domain.attachments`. The platform side: `chatbox.ports.media`.
"""

from __future__ import annotations

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
from chatbox.domain.errors import ConflictError, ConnectorUnavailableError, InvalidInputError, NotFoundError
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
from chatbox.services.sending import _carrying_connection, _target_chat
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Chat, Connection, Message
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
) -> FileReceipt:
    """Send a file to the chat at address `chat` (default: the focal chat) and store it as an outbound message
    with its attachment.

    Raises:
        InvalidInputError: a bad filename or caption, an empty file.
        AttachmentTooLargeError: over the platform's limit (nothing was sent).
        NoFocusError, NotFoundError, ConflictError: as `chatbox.services.sending.send_message`.
        ConnectorUnavailableError, PlatformRefusedError, RateLimitedError: from the connector.
    """
    check_file_arguments(filename, caption)
    if not data:
        raise InvalidInputError("the file is empty")
    mailbox = get_mailbox_any_account(db, mailbox_id)
    require_live_mailbox(mailbox)
    target = _target_chat(db, mailbox, chat)
    connection = _carrying_connection(db, mailbox, target)
    media = _media_of(platforms, target.platform)
    ctx = connection_context(db, vault, connection)
    limit = media.upload_limit(ctx, mime_type)
    check_declared_size(len(data), limit.max_bytes, f"{filename} ({target.platform}{limit.note})")
    release_before_network_call(db)
    file = OutboundFile(target.external_id, filename, data, mime_type, caption or None, reply_to)
    try:
        sent = media.send_file(ctx, file)
    except ConnectorUnavailableError as exc:
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
