"""Signal media for the contract's media routes: a file goes out as signal-cli's JSON-RPC `send` with an
`attachments` entry written as an RFC 2397 data URI (`data:<type>;filename=<name>;base64,<data>`, which
signal-cli accepts beside file paths, so no file is shared between the program and the daemon); an inbound
attachment is read from signal-cli's attachment store (`<config>/attachments/<id>`, where the daemon saves
every received attachment under the id its `receive` notifications name).
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path

from connectors.relay.media import ATTACHMENT_ID, AttachmentBody, FileRequest, FileSent
from connectors.relay.server import PlatformDown, SendRefused, SendRequest
from connectors.signal.rpc import RpcError, SignalCli, SignalCliUnreachable
from connectors.signal.send import _check_results, _refusal, send_params
from connectors.signal.translate import message_key

# Signal's limit for one attachment.
MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024
CHUNK_BYTES = 64 * 1024


def data_uri(mime_type: str, filename: str, data: bytes) -> str:
    """The attachment as signal-cli takes it inline (`;` and `,` cannot appear in the name part)."""
    safe_name = "".join("_" if c in ";,\\/" else c for c in filename)
    return f"data:{mime_type};filename={safe_name};base64,{base64.b64encode(data).decode()}"


async def send_file(cli: SignalCli, account: str, request: FileRequest, data: bytes) -> FileSent:
    """`send` with the file as its one attachment and the caption as its text; the message id as `/v1/send`'s."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise SendRefused(413, "too_large", f"Signal takes attachments up to {MAX_ATTACHMENT_BYTES} bytes")
    as_send = SendRequest(
        request_id=request.request_id,
        connection_id=request.connection_id,
        platform=request.platform,
        chat_id=request.chat_id,
        text=request.caption or "",
        reply_to=request.reply_to,
    )
    params = send_params(as_send)
    params["attachments"] = [data_uri(request.mime_type, request.filename, data)]
    try:
        result = await cli.call("send", params)
    except SignalCliUnreachable as exc:
        raise PlatformDown(str(exc)) from None
    except RpcError as exc:
        raise _refusal(exc) from None
    if not isinstance(result, dict) or not isinstance(result.get("timestamp"), int):
        raise PlatformDown("signal-cli answered the send without a timestamp")
    _check_results(result.get("results"))
    return FileSent(message_key(account, result["timestamp"]))


async def open_attachment(store: Path, attachment_id: str) -> AttachmentBody:
    """The stored attachment's bytes, streamed; 404 `not_found` for an id the store does not hold."""
    if not ATTACHMENT_ID.match(attachment_id):
        raise SendRefused(404, "not_found", "no such attachment")
    path = store / attachment_id
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError:
        raise SendRefused(404, "not_found", "signal-cli's attachment store has no such attachment") from None
    mime_type = mimetypes.guess_type(attachment_id)[0] or "application/octet-stream"
    return AttachmentBody(_read_chunks(path), mime_type, size)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)
