"""Discord media for the contract's media routes: a file goes out as a message with an attachment, the way
Discord takes uploads (`POST /channels/{id}/messages` as multipart/form-data: a `payload_json` part whose
`attachments` names each upload by index, and a `files[n]` part per file). Inbound attachments are CDN URLs
chatbox fetches itself, so the program serves none of them.
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.discord.rest import DiscordHttpError, DiscordRest, DiscordUnreachable
from connectors.discord.send import _SNOWFLAKE, _contract_error, referenced_message
from connectors.relay.media import AttachmentBody, FileRequest, FileSent
from connectors.relay.server import PlatformDown, RateLimited, SendRefused

log = logging.getLogger("connectors.discord.media")

# Discord's upload limit for a bot in a server without boosts (larger boosted limits are not assumed).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_CAPTION_CHARS = 2000


def file_payload(request: FileRequest) -> dict[str, Any]:
    """The `payload_json` of the message carrying the file."""
    payload: dict[str, Any] = {
        "attachments": [{"id": 0, "filename": request.filename}],
        "allowed_mentions": {"parse": ["users"], "replied_user": True},
    }
    if request.caption:
        payload["content"] = request.caption
    reply_to = referenced_message(request.reply_to)
    if reply_to is not None:
        payload["message_reference"] = {"message_id": reply_to, "fail_if_not_exists": False}
    return payload


async def send_file(rest: DiscordRest, request: FileRequest, data: bytes) -> FileSent:
    """The file as a message's attachment; the message's snowflake and the attachment's CDN URL."""
    if not _SNOWFLAKE.fullmatch(request.chat_id):
        raise SendRefused(404, "unknown_chat", "a Discord chat id is a channel's snowflake (digits only)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise SendRefused(413, "too_large", f"Discord takes uploads up to {MAX_UPLOAD_BYTES} bytes (10 MiB) from bots")
    if request.caption and len(request.caption) > MAX_CAPTION_CHARS:
        raise SendRefused(422, "too_long", f"a Discord caption is at most {MAX_CAPTION_CHARS} characters")
    try:
        message = await rest.create_message_with_file(
            request.chat_id, file_payload(request), (request.filename, data, request.mime_type)
        )
    except DiscordHttpError as exc:
        if exc.status == 429:
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            raise RateLimited(wait, f"Discord is rate limiting sends to this channel; wait {wait:.1f} s") from None
        if exc.status == 413:
            raise SendRefused(413, "too_large", f"Discord refused the file as too large: {exc.message}") from None
        raise _contract_error(exc) from None
    except DiscordUnreachable as exc:
        raise PlatformDown(str(exc)) from None
    message_id = str(message.get("id", ""))
    if not message_id:
        raise PlatformDown("Discord answered the upload without a message id")
    attachments = message.get("attachments")
    first = attachments[0] if isinstance(attachments, list) and attachments else {}
    url = first.get("url") if isinstance(first, dict) and isinstance(first.get("url"), str) else None
    log.info("file sent to discord", extra={"channel": request.chat_id, "message_id": message_id})
    return FileSent(message_id, url=url)


async def open_attachment(attachment_id: str) -> AttachmentBody:
    """Discord attachments are CDN URLs (chatbox fetches them itself): there is nothing to serve by id."""
    raise SendRefused(404, "not_found", f"no attachment {attachment_id[:40]}: Discord files are fetched from their URL")
