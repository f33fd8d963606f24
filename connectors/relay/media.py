"""The contract's media routes of a container program: `POST /v1/files` (send a file) and
`GET /v1/attachments/{id}` (an inbound attachment's bytes), beside `/v1/send` (CONTRACT.md, "Media").

A program supplies two async callbacks in `MediaHandlers`; HTTP (bearer check, multipart parsing, size limit,
error bodies) lives here. Errors are the send route's (`SendRefused`, `RateLimited`, `PlatformDown`; anything
else a logged 502); an unknown attachment is `SendRefused(404, "not_found", ...)`; a file over the platform's
limit `SendRefused(413, "too_large", ...)`, raised before the platform is called.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

log = logging.getLogger("connectors.relay.media")

# The largest file chatbox posts (Signal's own limit is 100 MiB; a platform's handler checks its own).
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
ATTACHMENT_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")

_UNAUTHORIZED = "wrong or missing bearer token (the connection's outbound_credential_id)"
Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class FileRequest(BaseModel):
    """The `payload_json` part of `POST /v1/files`; the file itself is the `file` part."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Id
    connection_id: Id
    platform: Id
    chat_id: Id
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    mime_type: Annotated[str, StringConstraints(min_length=3, max_length=255)]
    caption: Annotated[str, StringConstraints(max_length=4096)] | None = None
    reply_to: Annotated[str, StringConstraints(max_length=255)] | None = None


@dataclass(frozen=True)
class FileSent:
    """What the platform answered: the message's id (as `/v1/send` answers it) and its reference to the file."""

    message_id: str
    file_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class AttachmentBody:
    """An attachment's bytes, as chunks, with its type and size when known."""

    chunks: AsyncIterator[bytes]
    mime_type: str = "application/octet-stream"
    size: int | None = None


@dataclass(frozen=True)
class MediaHandlers:
    send_file: Callable[[FileRequest, bytes], Awaitable[FileSent]]
    open_attachment: Callable[[str], Awaitable[AttachmentBody]]


def _error(status: int, code: str, message: str, **extra: object) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


async def _read_part(part: BodyPartReader, limit: int) -> bytes | None:
    """The part's bytes, or None once it is longer than `limit`."""
    chunks: list[bytes] = []
    seen = 0
    while chunk := await part.read_chunk(64 * 1024):
        seen += len(chunk)
        if seen > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class MediaRoutes:
    """The two routes, sharing the send route's bearer check and error answers."""

    def __init__(self, handlers: MediaHandlers, authorized: Callable[[web.Request], bool]) -> None:
        self.handlers = handlers
        self.authorized = authorized

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.handle_file)
        app.router.add_get("/v1/attachments/{attachment_id}", self.handle_attachment)

    async def handle_file(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _error(
                401, "unauthorized", "wrong or missing bearer token (the connection's outbound_credential_id)"
            )
        if not request.content_type.startswith("multipart/"):
            return _error(415, "unsupported_media_type", "send multipart/form-data: payload_json and file")
        payload: bytes | None = None
        data: bytes | None = None
        filename = ""
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                return _error(400, "invalid_multipart", "nested multipart bodies are not taken")
            if part.name == "payload_json":
                payload = await _read_part(part, MAX_PAYLOAD_BYTES)
                if payload is None:
                    return _error(413, "too_large", f"payload_json exceeds {MAX_PAYLOAD_BYTES} bytes")
            elif part.name == "file":
                filename = part.filename or ""
                data = await _read_part(part, MAX_FILE_BYTES)
                if data is None:
                    return _error(413, "too_large", f"the file exceeds {MAX_FILE_BYTES} bytes")
        if payload is None or data is None:
            return _error(422, "invalid_request", "both parts are required: payload_json and file")
        try:
            file_request = FileRequest.model_validate(json.loads(payload))
        except (ValueError, RecursionError, ValidationError):
            return _error(422, "invalid_request", "payload_json is not a valid file request")
        del filename  # the payload's filename is the one that counts
        return await self._answer(file_request, data)

    async def _answer(self, file_request: FileRequest, data: bytes) -> web.Response:
        from connectors.relay.server import RateLimited, SendError  # one module defines the errors

        try:
            sent = await self.handlers.send_file(file_request, data)
        except SendError as exc:
            log.warning("file send failed", extra={"request_id": file_request.request_id, "code": exc.code})
            if isinstance(exc, RateLimited):
                response = _error(429, exc.code, exc.message, retry_after=exc.retry_after)
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return response
            return _error(exc.status, exc.code, exc.message)
        except Exception:
            log.exception("file handler crashed", extra={"request_id": file_request.request_id})
            return _error(502, "connector_error", "the connector failed to send the file; see its logs")
        body: dict[str, str] = {"message_id": sent.message_id}
        if sent.file_id:
            body["file_id"] = sent.file_id
        if sent.url:
            body["url"] = sent.url
        return web.json_response(body)

    async def handle_attachment(self, request: web.Request) -> web.StreamResponse:
        from connectors.relay.server import SendError

        if not self.authorized(request):
            return _error(
                401, "unauthorized", "wrong or missing bearer token (the connection's outbound_credential_id)"
            )
        attachment_id = request.match_info["attachment_id"]
        if not ATTACHMENT_ID.match(attachment_id):
            return _error(404, "not_found", "no such attachment")
        try:
            body = await self.handlers.open_attachment(attachment_id)
        except SendError as exc:
            return _error(exc.status, exc.code, exc.message)
        except Exception:
            log.exception("attachment handler crashed")
            return _error(502, "connector_error", "the connector failed to read the attachment; see its logs")
        response = web.StreamResponse(headers={"content-type": body.mime_type})
        if body.size is not None:
            response.content_length = body.size
        await response.prepare(request)
        async for chunk in body.chunks:
            await response.write(chunk)
        await response.write_eof()
        return response
