"""Telegram media: getFile + the file download URL for inbound attachments; sendPhoto / sendDocument (multipart)
for outbound files.

Limits (Bot API, cloud server): a bot downloads files up to 20 MB; it uploads photos up to 10 MB and other
files up to 50 MB. Images of another type than JPEG/PNG/WebP/GIF, and larger photos, go out as documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from chatbox.domain.attachments import AttachmentTooLargeError
from chatbox.domain.errors import ConnectorUnavailableError, NotFoundError, PlatformRefusedError
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.media import CHUNK_BYTES, FetchedFile, FileRef, OutboundFile, SentFile, UploadLimit, capped
from connectors.telegram.bot_api import BotApiClient, BotApiError

DOWNLOAD_LIMIT = 20 * 1024 * 1024
PHOTO_LIMIT = 10 * 1024 * 1024
DOCUMENT_LIMIT = 50 * 1024 * 1024
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")


def upload_limit(mime_type: str) -> UploadLimit:
    """Telegram takes documents up to 50 MB; a larger photo simply goes out as a document."""
    del mime_type
    return UploadLimit(DOCUMENT_LIMIT, ", whose bots upload files up to 50 MB")


def fetch_attachment(api: BotApiClient, token: str, ref: FileRef, *, max_bytes: int) -> FetchedFile:
    """getFile for the attachment's `file_id`, then stream `{api}/file/bot<token>/<file_path>`."""
    if not ref.file_id:
        raise NotFoundError("this Telegram attachment has no file_id to fetch it by")
    limit = min(max_bytes, DOWNLOAD_LIMIT)
    try:
        info = api.call(token, "getFile", {"file_id": ref.file_id})
    except BotApiError as exc:
        if "too big" in exc.description:
            raise AttachmentTooLargeError("Telegram lets bots download files up to 20 MB; this one is larger") from exc
        if exc.error_code == 400:
            raise NotFoundError(f"Telegram no longer has this file ({exc.description})") from exc
        raise ConnectorUnavailableError(f"Telegram failed getFile ({exc.description}); try again later") from exc
    path = info.get("file_path") if isinstance(info, dict) else None
    if not isinstance(path, str) or not path:
        raise ConnectorUnavailableError("Telegram answered getFile without a file_path; try again later")
    size = info.get("file_size")
    if isinstance(size, int) and size > limit:
        raise AttachmentTooLargeError(f"the file is {size} bytes, over the limit of {limit} bytes")
    response = api.open_file(token, path)
    return _streamed(response, limit, "the Telegram file")


def _streamed(response: httpx.Response, limit: int, what: str) -> FetchedFile:
    if response.status_code != 200:
        response.close()
        if response.status_code == 404:
            raise NotFoundError(f"{what} is gone (HTTP 404)")
        raise ConnectorUnavailableError(f"{what} could not be downloaded (HTTP {response.status_code}); try again")
    length = response.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    content_type = response.headers.get("content-type")
    mime = content_type.split(";")[0].strip() if content_type else None
    if mime == "application/octet-stream":
        mime = None  # Telegram serves every file so; the stored type says more
    chunks: Iterator[bytes] = capped(response.iter_bytes(CHUNK_BYTES), limit, what)
    return FetchedFile(chunks, mime, declared, response.close)


def send_file(api: BotApiClient, token: str, file: OutboundFile, reply_id: int | None) -> tuple[Any, str]:
    """sendPhoto for a photo Telegram shows inline (JPEG/PNG/WebP up to 10 MB), sendDocument otherwise.
    Returns (the sent Message, the method used)."""
    as_photo = file.mime_type in PHOTO_TYPES and len(file.data) <= PHOTO_LIMIT
    method, field = ("sendPhoto", "photo") if as_photo else ("sendDocument", "document")
    fields: dict[str, str] = {"chat_id": file.chat_id}
    if file.caption:
        fields["caption"] = file.caption
    if reply_id is not None:
        fields["reply_parameters"] = json.dumps({"message_id": reply_id, "allow_sending_without_reply": True})
    sent = api.call_multipart(token, method, fields, {field: (file.filename, file.data, file.mime_type)})
    return sent, method


def sent_file(sent: Any, external_id: str) -> SentFile:
    """The sent message's file id: the largest size of a photo, the document's own."""
    file_id: str | None = None
    if isinstance(sent, dict):
        photo = sent.get("photo")
        if isinstance(photo, list) and photo:
            sizes = [p for p in photo if isinstance(p, dict) and isinstance(p.get("file_id"), str)]
            if sizes:
                file_id = max(sizes, key=lambda p: int(p.get("width", 0)) * int(p.get("height", 0)))["file_id"]
        document = sent.get("document")
        if file_id is None and isinstance(document, dict) and isinstance(document.get("file_id"), str):
            file_id = document["file_id"]
    return SentFile(external_id, file_id=file_id)


def require_token(ctx: ConnectionContext, token: str | None) -> str:
    if not token:
        raise ConnectorUnavailableError(f"the telegram connection {ctx.connection_id} has no bot_token; reconnect it")
    return token


def refused_file(exc: BotApiError) -> PlatformRefusedError | None:
    """A 413 (Request Entity Too Large) or a "file is too big" from an upload, as the agent should read it."""
    if exc.error_code == 413 or "too big" in exc.description.lower():
        return PlatformRefusedError(f"Telegram refused the file as too large ({exc.description})")
    return None
