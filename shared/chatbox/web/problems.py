"""Errors as answers, in plain data: status, `{"code", "message"}` body and headers.

One renderer for both ways a request is served: the FastAPI exception handlers (`chatbox.web.errors`) wrap these
in a `JSONResponse`, the fast lane (`chatbox.web.fast_ingest`) writes them as two ASGI messages. No FastAPI here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError

from chatbox.domain.attachments import AttachmentTooLargeError
from chatbox.domain.errors import (
    AuthenticationError,
    ChatboxError,
    ConflictError,
    ConnectorUnavailableError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PlatformRefusedError,
    RateLimitedError,
    ThrottledError,
    VaultError,
)
from chatbox.domain.untrusted import shown_name

# The name these errors were always logged under (they are the REST face's errors, wherever rendered).
log = logging.getLogger("chatbox.web.errors")

# Where FastAPI says the error is; the parts after it are field names, indexes or keys of the input.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie", "[key]"})

STATUS_BY_ERROR: dict[type[ChatboxError], int] = {
    AuthenticationError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
    ThrottledError: 429,
    VaultError: 503,
    # Creating a telegram/slack connection calls the platform (chatbox.ports.ingest.WebhookPlatform.provision).
    ConnectorUnavailableError: 502,
    # Attachments (`GET /v1/attachments/{id}`) are fetched from the platform.
    AttachmentTooLargeError: 413,
    PlatformRefusedError: 502,
    RateLimitedError: 502,
}


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    content: dict[str, Any]
    headers: dict[str, str] | None = None

    def body(self) -> bytes:
        """The body exactly as Starlette's `JSONResponse` renders `content`."""
        return json_bytes(self.content)


def json_bytes(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _status_for(exc: ChatboxError) -> int:
    for error_type in type(exc).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type]
    return 400


def chatbox_error_answer(exc: ChatboxError) -> ErrorAnswer:
    status = _status_for(exc)
    if status >= 500:
        log.error("service error: %s", exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, ThrottledError):
        headers = {"Retry-After": str(exc.retry_after)}
    return ErrorAnswer(status, error_body(exc.code, exc.message), headers)


def database_unavailable_answer(exc: OperationalError) -> ErrorAnswer:
    # The database is restarting, unreachable or busy (the driver's OperationalError): nothing was committed,
    # so the caller may retry the same request.
    log.warning("database unavailable: %s", type(exc.orig).__name__)
    body = error_body("unavailable", "the database is unavailable; retry shortly")
    return ErrorAnswer(503, body, {"Retry-After": "1"})


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def _public_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """Where and what, never the input: no `input` or `ctx`, and a key of the body (an unknown field, a template
    name) is named only when it looks like a name (`chatbox.domain.untrusted.shown_name`)."""
    location = [part if part in _LOCATIONS else shown_name(part) for part in error.get("loc", ())]
    return {"loc": location, "msg": error.get("msg", "invalid"), "type": error.get("type", "invalid")}


def validation_answer(problems: Iterable[Mapping[str, Any]]) -> ErrorAnswer:
    """The 422 of a request that does not match its schema (`problems` as pydantic or FastAPI list them)."""
    # Never echo the offending input back: it may be a secret.
    errors = [_public_error(e) for e in problems]
    message = "; ".join(_describe(e) for e in errors[:5]) or "invalid request"
    return ErrorAnswer(422, error_body("invalid_request", message, errors=errors))
