"""One table from error types to HTTP answers. Every error body is `{"code", "message"}` (+ `errors`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

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

log = logging.getLogger(__name__)

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

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


class ValidationProblem(BaseModel):
    """One problem of a refused request: where (`["body", "name"]`) and what, never the input."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer of the REST API."""

    code: str = Field(description="Stable and machine-readable: unauthorized, not_found, conflict, invalid_request, …")
    message: str = Field(description="What is wrong and what to do; never repeats the input that was refused")
    errors: list[ValidationProblem] | None = Field(default=None, description="On 422 invalid_request: each problem")


# What each error status means on the routes that can answer it (OpenAPI `responses`, via `error_responses`).
ERROR_MEANINGS: dict[int, str] = {
    400: "The body could not be read as JSON at all",
    401: "No valid credential: a missing, unknown or revoked bearer token",
    403: "Authenticated, but not allowed here",
    404: "No such resource for this account (another account's id answers the same)",
    409: "Not possible in the resource's current state (archived, already connected, still in use)",
    413: "Request body over 1 MiB",
    422: "The request does not match the schema, or names something unusable (`errors` lists each problem)",
    429: "Too many failed authentication attempts from this client lately (`rate_limited`); nothing was checked",
    502: "The platform could not be reached to set the connection up; try again later",
}


ERROR_BODY_REF = "#/components/schemas/ErrorBody"


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ERROR_BODY_REF}}}


def error_responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route answering these error statuses, each with the `ErrorBody` schema.

    `meanings` overrides a status's description for one route: `error_responses(401, s401="...")`.

    The schema is a reference rather than `"model": ErrorBody`: FastAPI builds a pydantic `TypeAdapter` per
    documented model response of every route when it analyses the route (a third of the API function's route
    set-up, for a document built once), and the document is the same (`chatbox.web.openapi` adds `ErrorBody`
    to its components).
    """
    return {
        status: {"description": meanings.get(f"s{status}", ERROR_MEANINGS[status]), "content": _error_content()}
        for status in statuses
    }


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}

# OpenAPI `responses=` of every route a client authenticates on: failed attempts are throttled (a router's default).
THROTTLED_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": ERROR_MEANINGS[429], "headers": _RETRY_AFTER, "content": _error_content()},
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def _status_for(exc: ChatboxError) -> int:
    for error_type in type(exc).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type]
    return 400


async def _on_chatbox_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChatboxError)
    status = _status_for(exc)
    if status >= 500:
        log.error("service error: %s", exc.message)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, ThrottledError):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def _public_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """Where and what, never the input: no `input` or `ctx`, and a key of the body (an unknown field, a template
    name) is named only when it looks like a name (`chatbox.domain.untrusted.shown_name`)."""
    location = [part if part in _LOCATIONS else shown_name(part) for part in error.get("loc", ())]
    return {"loc": location, "msg": error.get("msg", "invalid"), "type": error.get("type", "invalid")}


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the offending input back: it may be a secret.
    errors = [_public_error(e) for e in exc.errors()]
    message = "; ".join(_describe(e) for e in errors[:5]) or "invalid request"
    return JSONResponse(error_body("invalid_request", message, errors=jsonable_encoder(errors)), status_code=422)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationalError)
    # The database is restarting, unreachable or busy (the driver's OperationalError): nothing was committed,
    # so the caller may retry the same request.
    log.warning("database unavailable: %s", type(exc.orig).__name__)
    return JSONResponse(
        error_body("unavailable", "the database is unavailable; retry shortly"),
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChatboxError, _on_chatbox_error)
    app.add_exception_handler(OperationalError, _on_database_unavailable)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
