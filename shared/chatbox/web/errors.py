"""One table from error types to HTTP answers. Every error body is `{"code", "message"}` (+ `errors`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbox.domain.errors import ChatboxError
from chatbox.web.problems import (
    ErrorAnswer,
    chatbox_error_answer,
    database_unavailable_answer,
    error_body,
    validation_answer,
)

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


def _json(answer: ErrorAnswer) -> JSONResponse:
    return JSONResponse(answer.content, status_code=answer.status, headers=answer.headers)


async def _on_chatbox_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChatboxError)
    return _json(chatbox_error_answer(exc))


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _json(validation_answer(exc.errors()))


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _on_database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OperationalError)
    return _json(database_unavailable_answer(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ChatboxError, _on_chatbox_error)
    app.add_exception_handler(OperationalError, _on_database_unavailable)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
