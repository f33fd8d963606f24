"""`GET /v1/attachments/{attachment_id}`: an inbound attachment, fetched from its platform on demand and streamed.

Two ways in: `Authorization: Bearer <the mailbox's MCP token>` (what an MCP client already holds), or the signed
short-lived link a webhook body and read_chat carry (`?expires=…&signature=…`, `chatbox.domain.attachments`).
Nothing is cached; at most CHATBOX_ATTACHMENT_MAX_BYTES pass (413 before any byte when the size is known,
a cut-off stream when a platform sends more than it declared).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Query
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatbox.domain.errors import AuthenticationError, NotFoundError
from chatbox.ports.media import FetchedFile
from chatbox.services.attachments import locate_attachment, open_attachment
from chatbox.services.focus import authenticate_mailbox
from chatbox.services.throttle import Attempt
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import ClientAddress, RuntimeDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses

router = declared_router(prefix="/v1", tags=["attachments"], responses=THROTTLED_RESPONSES)

_mcp_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="McpToken",
    description="The MCP token of the mailbox the attachment belongs to (or use the signed link instead)",
)


def _stream(fetched: FetchedFile) -> Iterator[bytes]:
    try:
        yield from fetched.chunks
    finally:
        fetched.close()


@router.get(
    "/attachments/{attachment_id}",
    summary="Fetch an inbound attachment from its platform",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The file's bytes, with its MIME type", "content": {"application/octet-stream": {}}},
        **error_responses(
            401,
            404,
            413,
            502,
            s401="Neither the mailbox's MCP token nor a valid, unexpired signed link",
            s404="No such attachment (or one of another mailbox), or the platform no longer has the file",
            s413="The file is larger than CHATBOX_ATTACHMENT_MAX_BYTES (or the platform's download limit)",
            s502="The platform could not be reached, refused, or asks to slow down; try again later",
        ),
    },
)
def get_attachment(
    attachment_id: str,
    runtime: RuntimeDep,
    client: ClientAddress,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_mcp_bearer)],
    expires: Annotated[str | None, Query(max_length=12, description="The signed link's expiry (unix seconds)")] = None,
    signature: Annotated[str | None, Query(max_length=64, description="The signed link's signature")] = None,
) -> StreamingResponse:
    """The attachment's bytes, streamed from the platform. Authorized by the mailbox's MCP token or a signed link
    (`url` of an attachment in a webhook body or read_chat)."""
    attempt = Attempt(client, f"attachment:{attachment_id[:64]}")
    with runtime.auth_throttle.guard(attempt), runtime.db.session() as db:
        if expires is not None and signature is not None:
            if not runtime.attachment_links.is_valid(attachment_id, expires, signature, time.time()):
                raise AuthenticationError("this attachment link is invalid or has expired; ask for a fresh one")
            located = locate_attachment(db, attachment_id)
        elif credentials is not None and credentials.scheme.lower() == "bearer":
            # Unknown id and wrong token answer alike (401), so neither confirms the other.
            try:
                located = locate_attachment(db, attachment_id)
            except NotFoundError as exc:
                raise AuthenticationError("invalid MCP token for this attachment's mailbox") from exc
            authenticate_mailbox(db, located.mailbox_id, credentials.credentials)
        else:
            raise AuthenticationError(
                "send `Authorization: Bearer <the mailbox's MCP token>`, or use the attachment's signed url"
            )
        shown = located.shown()
        fetched = open_attachment(
            db, runtime.vault, runtime.platforms, located, max_bytes=runtime.settings.attachment_max_bytes
        )
    headers = {"cache-control": "private, no-store", "x-content-type-options": "nosniff"}
    if fetched.size is not None:
        headers["content-length"] = str(fetched.size)
    if shown.get("name"):
        headers["content-disposition"] = _disposition(str(shown["name"]))
    media_type = fetched.mime_type or "application/octet-stream"
    return StreamingResponse(_stream(fetched), media_type=media_type, headers=headers)


def _disposition(name: str) -> str:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
