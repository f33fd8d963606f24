"""The mailbox's media tools: `read_attachment` (an inbound file, fetched from its platform) and `send_file`.

Listed only for a mailbox with a platform whose connector has the media capability (`chatbox.ports.media`).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from typing import Annotated, Any

import mcp_types as types
from pydantic import Field, StringConstraints, model_validator

from chatbox.domain.attachments import AttachmentTooLargeError, sniff_image_type
from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError

# Imported by chatbox.mcp.tools inside Toolset, so these names resolve once tools is loaded.
from chatbox.mcp.tools import (
    CHAT_ID_HELP,
    IDEMPOTENCY_HELP,
    ChatAddress,
    ExternalRef,
    IdempotencyKey,
    ToolContext,
    ToolOutput,
    ToolSpec,
    _Input,
)
from chatbox.ports.media import media_connector
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services import attachments

# Images an MCP client shows as an image block; any other file is an embedded resource.
IMAGE_BLOCK_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# An MCP request carries at most 1 MiB (chatbox.web.middleware.MAX_BODY_BYTES), so data_base64 is for files up
# to about 700 KB; larger ones go by url.
MAX_BASE64_CHARS = 1_000_000

MEDIA = "media"  # the capability name media tools are listed by (`chatbox.mcp.tools.Toolset.actions_of`)

AttachmentId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ReadAttachmentInput(_Input):
    attachment_id: AttachmentId = Field(
        description="The attachment's id (`att_…`) from a webhook body's `message.attachments` or read_chat."
    )


class SendFileInput(_Input):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=attachments.MAX_FILENAME)] = Field(
        description="The file's name as the chat shows it, e.g. `report.pdf` (its extension sets the type)."
    )
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="A public http(s) URL chatbox downloads the file from (no redirects followed)."
    )
    data_base64: Annotated[str, StringConstraints(min_length=1, max_length=MAX_BASE64_CHARS)] | None = Field(
        default=None,
        description="The file itself, base64-encoded (instead of url); for small files only (about 700 KB: an MCP "
        "request carries at most 1 MiB), larger ones go by url.",
    )
    chat_id: ChatAddress | None = Field(default=None, description=CHAT_ID_HELP + " Default: the focal chat.")
    caption: Annotated[str, StringConstraints(max_length=attachments.MAX_CAPTION)] | None = Field(
        default=None, description="Text shown with the file."
    )
    reply_to: ExternalRef | None = Field(
        default=None, description="The platform id (`external_id`) of a message in that chat to reply to."
    )
    mime_type: Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+-]+$", max_length=255)] | None = Field(
        default=None, description="The file's MIME type; default: guessed from filename."
    )
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description=IDEMPOTENCY_HELP + " For a file, the same arguments are the same chat, filename, caption, "
        "reply_to, mime type and bytes (or, with url, the same url).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> SendFileInput:
        if (self.url is None) == (self.data_base64 is None):
            raise ValueError("pass exactly one of url and data_base64")
        return self


def has_media(platforms: PlatformRegistry, platform: str) -> bool:
    """Whether chatbox can fetch and send files on `platform` in this process."""
    try:
        return media_connector(platforms.connector(platform)) is not None
    except ConnectorUnavailableError:
        return False


def run_read_attachment(ctx: ToolContext, args: ReadAttachmentInput) -> ToolOutput:
    cap = ctx.runtime.settings.mcp_attachment_max_bytes
    runtime = ctx.runtime
    with runtime.db.session() as db:
        located = attachments.locate_attachment(db, args.attachment_id, mailbox_id=ctx.mailbox_id)
        shown = located.shown()
        try:
            fetched = attachments.open_attachment(db, runtime.vault, runtime.platforms, located, max_bytes=cap)
            with fetched:
                data = fetched.read_all()
        except AttachmentTooLargeError as exc:
            raise AttachmentTooLargeError(
                f"attachment {shown['id']} is larger than read_attachment's limit of {cap} bytes ({exc.message}); "
                f"its url (GET {runtime.settings.public_url}/v1/attachments/{shown['id']} with this mailbox's MCP "
                "token) serves it whole"
            ) from exc
    mime = (fetched.mime_type or shown.get("mime_type") or sniff_image_type(data) or "application/octet-stream").lower()
    encoded = base64.b64encode(data).decode()
    shown = {**shown, "size": len(data), "mime_type": mime}
    label = " ".join(str(p) for p in (shown["kind"], shown.get("name")) if p)
    block: Any
    if mime in IMAGE_BLOCK_TYPES:
        block = types.ImageContent(data=encoded, mime_type=mime)
        text = f"{shown['id']}: {label}, {mime}, {len(data)} bytes (the image follows)."
    else:
        uri = f"{runtime.settings.public_url}/v1/attachments/{shown['id']}"
        block = types.EmbeddedResource(resource=types.BlobResourceContents(uri=uri, mime_type=mime, blob=encoded))
        text = f"{shown['id']}: {label}, {mime}, {len(data)} bytes (embedded as a resource)."
    return ToolOutput(text, {"attachment": shown}, content=(block,))


def _decoded(data_base64: str) -> bytes:
    try:
        return base64.b64decode(data_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("data_base64 is not valid base64") from exc


def run_send_file(ctx: ToolContext, args: SendFileInput) -> ToolOutput:
    runtime = ctx.runtime
    attachments.check_file_arguments(args.filename, args.caption)
    guessed = mimetypes.guess_type(args.filename, strict=False)[0]
    mime = args.mime_type or guessed
    with runtime.db.session() as db:
        address, limit = attachments.upload_limit(
            db, runtime.vault, runtime.platforms, ctx.mailbox_id, args.chat_id, mime or "application/octet-stream"
        )
    max_bytes = min(limit.max_bytes, runtime.settings.attachment_max_bytes)
    too_large = f"the file is over {max_bytes} bytes, the most chatbox sends to {address}{limit.note}"
    if args.data_base64 is not None:
        if len(args.data_base64) * 3 // 4 > max_bytes + 2:
            raise AttachmentTooLargeError(too_large)
        data = _decoded(args.data_base64)
    else:
        assert args.url is not None  # the input model asks for one of the two
        # httpx loads on the first download only: the MCP function's cold start does not pay for it.
        from chatbox.adapters.file_download import download_file

        try:
            downloaded = download_file(args.url, runtime.address_policy, max_bytes=max_bytes)
        except AttachmentTooLargeError as exc:
            raise AttachmentTooLargeError(too_large) from exc
        data = downloaded.data
        mime = mime or downloaded.mime_type
    if len(data) > max_bytes:
        raise AttachmentTooLargeError(too_large)
    with runtime.db.session() as db:
        sent = attachments.send_file(
            db,
            runtime.vault,
            runtime.platforms,
            ctx.mailbox_id,
            chat=address,
            filename=args.filename,
            data=data,
            mime_type=mime or "application/octet-stream",
            caption=args.caption,
            reply_to=args.reply_to,
            idempotency_key=args.idempotency_key,
            source_url=args.url,
        )
    text = f"Sent {args.filename} ({len(data)} bytes) to {sent.chat_id} (platform message id {sent.external_id})"
    if sent.replayed:
        text += "; this idempotency_key was already sent, so nothing new was posted"
    return ToolOutput(
        text + ".",
        {
            "chat_id": sent.chat_id,
            "message_id": sent.message_id,
            "external_id": sent.external_id,
            "attachment_id": sent.attachment_id,
            "already_sent": sent.replayed,
        },
    )


MEDIA_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_attachment",
        "Read an attachment",
        "Open an attachment (image, file, voice, ...) of a message by its id (`att_…` in webhook bodies and "
        "read_chat): chatbox fetches it from the platform. Images come back as an image block, other files as an "
        "embedded resource (base64). Files over the size limit are a tool error naming the url to fetch instead.",
        ReadAttachmentInput,
        run_read_attachment,
        read_only=True,
        capability=MEDIA,
    ),
    ToolSpec(
        "send_file",
        "Send a file",
        "Send a file (an image, a document, ...) to the focal chat, or to chat_id, with an optional caption: pass "
        "either url (public http(s); chatbox downloads it) or data_base64 (small files). Images go out as photos "
        "where the platform shows them inline. Limits: Telegram 50 MB (photos 10 MB), Slack 1 GB, Discord 10 MB, "
        "Signal 100 MB, and chatbox's own limit; over it is a tool error before anything is sent. The file is recorded "
        "like a sent message. Pass an idempotency_key and reuse it on retries: a retry never posts twice.",
        SendFileInput,
        run_send_file,
        read_only=False,
        capability=MEDIA,
    ),
)
