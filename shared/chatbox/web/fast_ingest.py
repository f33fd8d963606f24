"""The fast lane: the two hot routes served as plain ASGI, in front of the FastAPI app.

`POST /v1/ingest/{platform}/{connection_id}` (webhook platforms) and `POST /v1/connections/{connection_id}/messages`
(container connectors) are most of what a deployment serves. Through FastAPI each paid for seven middleware
layers, route matching over every router and dependency solving: more main-thread time than the accept itself.
Here they are matched with string operations and answered in two ASGI messages, calling the same core
(`IngestDispatcher`) and rendering errors with the same renderer (`chatbox.web.problems`) as the FastAPI routes,
which stay declared for the OpenAPI spec and serve whatever this lane hands on.

The lane answers only requests whose answer it knows to be the routes' own: anything unusual (a body that is
not JSON or not declared as JSON, a body streamed past the limit, a trailing slash, another method) goes to the
FastAPI app with the body read so far replayed, and gets exactly today's answer from it.
"""

from __future__ import annotations

import json
import time

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatbox.domain.errors import AuthenticationError, ChatboxError
from chatbox.domain.normalized import InboundMessage
from chatbox.ports import metrics
from chatbox.ports.ingest import WebhookRequest
from chatbox.runtime import Runtime
from chatbox.services.throttle import client_address
from chatbox.web.ingest_paths import INBOUND_ROUTE, INGEST_ROUTE  # also the request metrics' route labels
from chatbox.web.lazy import route_path
from chatbox.web.middleware import MAX_BODY_BYTES, too_large
from chatbox.web.problems import (
    ErrorAnswer,
    chatbox_error_answer,
    database_unavailable_answer,
    validation_answer,
)

_JSON = b"application/json"
_SERVER_ERROR = b"Internal Server Error"
_SERVER_ERROR_HEADERS = [(b"content-length", b"21"), (b"content-type", b"text/plain; charset=utf-8")]
_MISSING_BEARER = "missing bearer token: send `Authorization: Bearer <inbound_token>`"

# An answer: status, body, content type, the route's own headers.
_Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


class _HandOn(Exception):
    """The request is one the FastAPI route answers in its own way: hand it on."""


class FastIngest:
    """ASGI app: the hot routes of `runtime.ingest` (each only if `ingest` / `inbound`), everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        *,
        ingest: bool = True,
        inbound: bool = True,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.ingest = ingest
        self.inbound = inbound
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._route(scope)
            if route is not None:
                await self._serve(scope, receive, send, *route)
                return
        await self.app(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[str, tuple[str, str]] | None:
        """The matched template and its two path parameters, as Starlette's router would match them."""
        parts = route_path(scope).split("/")
        if len(parts) != 5 or parts[0] or parts[1] != "v1" or not parts[3]:
            return None
        if self.ingest and parts[2] == "ingest" and parts[4]:
            return INGEST_ROUTE, (parts[3], parts[4])
        if self.inbound and parts[2] == "connections" and parts[4] == "messages":
            return INBOUND_ROUTE, (parts[3], "")
        return None

    async def _serve(self, scope: Scope, receive: Receive, send: Send, template: str, params: tuple[str, str]) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.encode("latin-1").isdigit() or int(declared) > self.max_body):
            # As the body-size middleware answers it: before any route is matched.
            await too_large(send, self.max_body)
            _record(template="unmatched", status=413, started=started)
            return
        chunks, complete = await _read_body(receive, self.max_body)
        if not complete:
            await self.app(scope, _replaying(chunks, receive, complete=False), send)
            return
        body = b"".join(chunks)
        try:
            if template is INGEST_ROUTE:
                answer = await self._ingest(scope, headers, body, params)
            else:
                answer = await self._inbound(scope, headers, body, params[0])
        except _HandOn:
            await self.app(scope, _replaying(chunks, receive, complete=True), send)
            return
        except Exception:
            # What Starlette's ServerErrorMiddleware does for the app: a plain 500, then the server logs the traceback.
            _record(template, 500, started)
            await send({"type": "http.response.start", "status": 500, "headers": _SERVER_ERROR_HEADERS})
            await send({"type": "http.response.body", "body": _SERVER_ERROR})
            raise
        try:
            await _send(send, answer)
        finally:
            _record(template, answer[0], started)

    async def _ingest(self, scope: Scope, headers: dict[str, str], body: bytes, params: tuple[str, str]) -> _Answer:
        platform, connection_id = params
        try:
            reply = await self.runtime.ingest.dispatch_webhook(
                platform, connection_id, WebhookRequest(headers, body), client=client_address(scope.get("client"))
            )
        except (ChatboxError, OperationalError) as exc:
            return _error(exc)
        return reply.status, reply.body, reply.content_type.encode("latin-1"), _raw_headers(reply.headers)

    async def _inbound(self, scope: Scope, headers: dict[str, str], body: bytes, connection_id: str) -> _Answer:
        # FastAPI's order: the body is read as JSON first (its failures are the app's own 4xx), then the caller is
        # authenticated, then the body validated.
        if not body or not _is_json(headers.get("content-type")):
            raise _HandOn
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise _HandOn from None
        token = _bearer(headers.get("authorization"))
        ingest = self.runtime.ingest
        try:
            if token is None:
                raise AuthenticationError(_MISSING_BEARER)
            await ingest.authenticate_posted(connection_id, token, client=client_address(scope.get("client")))
            try:
                # As FastAPI validates a body parameter.
                message = InboundMessage.model_validate(data, from_attributes=True)
            except ValidationError as exc:
                return _answer(validation_answer(_in_body(exc)))
            result = await ingest.accept_posted(connection_id, message, token=token)
        except (ChatboxError, OperationalError) as exc:
            return _error(exc)
        return 202, result.model_dump_json().encode(), _JSON, []


def _headers(scope: Scope) -> dict[str, str]:
    """Header names lower-cased (as ASGI gives them), the first of repeated ones, as Starlette's `Headers.get`."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


def _is_json(content_type: str | None) -> bool:
    # FastAPI also reads `application/<x>+json` and parameters; only the plain forms are taken here.
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _bearer(authorization: str | None) -> str | None:
    """The credentials of `Authorization: Bearer <token>`, as FastAPI's `HTTPBearer(auto_error=False)` reads them."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if not scheme or not credentials or scheme.lower() != "bearer":
        return None
    return credentials


def _in_body(exc: ValidationError) -> list[dict[str, object]]:
    return [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]


async def _read_body(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks, and whether they are all of it within `limit` (if not, the app behind gets them)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return chunks, False
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return chunks, False
        if not message.get("more_body", False):
            return chunks, True


def _replaying(chunks: list[bytes], receive: Receive, *, complete: bool) -> Receive:
    """A `receive` that gives the app behind what was read already, then what is still to come."""
    pending = [b"".join(chunks)]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": not complete}
        return await receive()

    return replay


def _error(exc: ChatboxError | OperationalError) -> _Answer:
    if isinstance(exc, ChatboxError):
        return _answer(chatbox_error_answer(exc))
    return _answer(database_unavailable_answer(exc))


def _answer(answer: ErrorAnswer) -> _Answer:
    return answer.status, answer.body(), _JSON, _raw_headers(answer.headers or {})


def _raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def _send(send: Send, answer: _Answer) -> None:
    status, body, content_type, extra = answer
    # The headers in the order Starlette's `Response` writes them: the route's own, then length and type.
    headers = [*extra, (b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _record(template: str, status: int, started: float) -> None:
    """The request metrics `MetricsMiddleware` records for the app's routes."""
    metrics.count(metrics.HTTP_REQUESTS, ("POST", template, str(status)))
    metrics.observe(metrics.HTTP_SECONDS, time.perf_counter() - started, (template,))
