"""The one ASGI endpoint behind every chatbox MCP path: bearer authentication, then stateless MCP serving.

Each request is authenticated before any MCP processing (a malformed body still gets its 401),
then handed to a fresh stateless, JSON-response session manager around a low-level server built
for the caller. Stateless mode keeps that cheap, serves both protocol eras (2026-07-28's
`server/discover` and the older `initialize`), and works the same under uvicorn and Mangum, where
a manager's single-use `run()` rules out one long-lived manager.

Only POST is served: stateless mode has no session to stream server-initiated messages on or to
delete, so GET (the optional event stream, which would stay open until the client leaves, and
under Mangum until Lambda's timeout) and DELETE answer 405 `Allow: POST` at once, as the
streamable HTTP transport allows. The SDK's client opens that stream and deletes a session only
when the server handed it a session id, which a stateless server never does.

Failed authentications are throttled (`chatbox.services.throttle`): a client that failed too often
lately gets 429 with `Retry-After` before its token is looked at.

Example:
    ```python
    endpoint = McpEndpoint(
        realm="chatbox-mcp",
        credential="mcp_token",
        authenticate=lambda path_params, token: ...,  # -> an identity, or raise AuthenticationError
        build_server=lambda identity: ...,  # -> a low-level mcp Server for that identity
        security=lambda: transport_security(runtime.settings),
        throttle=runtime.auth_throttle,
        throttle_target=lambda path_params, token: f"mcp:{path_params['mailbox_id']}",
    )
    Route("/mcp/{mailbox_id}", endpoint=endpoint, methods=MCP_METHODS)
    ```
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import anyio.to_thread
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Message, Receive, Scope, Send

from chatbox.domain.errors import AuthenticationError, ChatboxError, ForbiddenError, ThrottledError
from chatbox.domain.settings import Settings
from chatbox.services.throttle import Attempt, AuthThrottle, client_address

log = logging.getLogger(__name__)

IdentityT = TypeVar("IdentityT")

# The methods the routes hand to the endpoint: it serves POST and answers the others 405 itself, in JSON.
MCP_METHODS = ["GET", "POST", "DELETE"]
SERVED_METHODS = "POST"

# The one table from authentication errors to HTTP answers; anything else raised while authenticating
# (the database is unreachable, ...) answers 503 rather than a 500.
STATUS_BY_AUTH_ERROR: tuple[tuple[type[ChatboxError], int], ...] = (
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (ThrottledError, 429),
)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection with the Host and Origin values the deployment answers to."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=settings.mcp_hosts(),
        allowed_origins=settings.mcp_origins(),
    )


def bearer_token(scope: Scope) -> str | None:
    """The bearer token of the Authorization header, or None when absent or of another scheme."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


async def send_json_error(send: Send, status: int, code: str, message: str, headers: Mapping[str, str]) -> None:
    """Answer `{"code", "message"}` with `status`, as the REST face does."""
    payload = json.dumps({"code": code, "message": message}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


# JSON-RPC's answers to a body rejected before any method ran (its `id` is null, as the spec asks): said in
# fixed words, because the SDK's own repeat the request (a pydantic error shows the input values).
_REJECTED_BODY = {
    -32700: "Parse error: the body is not JSON",
    -32600: "Invalid request: the body is not a JSON-RPC 2.0 message",
    -32602: "Invalid request: the body is not a JSON-RPC 2.0 request, notification or response",
}


def scrub_jsonrpc_error(body: bytes) -> bytes:
    """A JSON-RPC error answer without the request's words: no `data` (the SDK puts an unknown method's name
    there), and fixed text for a rejected body. Any other body is returned as it is."""
    if not body.startswith(b"{") or b'"error"' not in body:
        return body
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return body
    error.pop("data", None)
    if answer.get("id") is None:
        code = error.get("code")
        error["message"] = _REJECTED_BODY.get(code, "Invalid request") if isinstance(code, int) else "Invalid request"
    return json.dumps(answer, separators=(",", ":")).encode()


def without_echo(send: Send) -> Send:
    """`send`, with each whole JSON answer passed through `scrub_jsonrpc_error` (its Content-Length fixed up).
    A streamed answer (several body messages) passes untouched: chatbox serves JSON responses only."""
    held: Message | None = None

    async def scrubbing_send(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            held = message
            return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        start, held = held, None
        if message.get("more_body", False):
            await send(start)
            await send(message)
            return
        body = scrub_jsonrpc_error(message.get("body", b""))
        headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({**message, "body": body})

    return scrubbing_send


async def serve_stateless(
    server: Server[Any], security: TransportSecuritySettings, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one request with a fresh stateless, JSON-response session manager (its `run()` is single-use)."""
    manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True, security_settings=security)
    async with manager.run():
        await manager.handle_request(scope, receive, send)


class McpEndpoint(Generic[IdentityT]):
    """An ASGI endpoint: authenticate the bearer token for the path, then serve MCP for that identity.

    Args:
        realm: the `WWW-Authenticate` realm of the 401 answers.
        credential: what the bearer token is, named in the 401 for a missing one (`mcp_token`, `api_key`).
        authenticate: `(path_params, token) -> identity`, synchronous (it runs in a worker thread);
            raises `AuthenticationError` (401) or `ForbiddenError` (403).
        build_server: the low-level MCP server for an authenticated identity (built per request).
        security: the transport security settings (allowed Host and Origin values), read per request: on a
            first deploy the public URL is learnt from the first request (`Settings.adopt_serving_domain`).
        throttle: the runtime's failed-authentication throttle.
        throttle_target: `(path_params, token) -> target` the failures count against with the client
            (`chatbox.services.throttle.Attempt.target`).
    """

    def __init__(
        self,
        *,
        realm: str,
        credential: str,
        authenticate: Callable[[Mapping[str, Any], str], IdentityT],
        build_server: Callable[[IdentityT], Server[Any]],
        security: Callable[[], TransportSecuritySettings],
        throttle: AuthThrottle,
        throttle_target: Callable[[Mapping[str, Any], str], str],
    ) -> None:
        self.realm = realm
        self.credential = credential
        self.authenticate = authenticate
        self.build_server = build_server
        self.security = security
        self.throttle = throttle
        self.throttle_target = throttle_target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            message = (
                "this MCP server is stateless with JSON responses: POST each request (no event stream, no sessions)"
            )
            await send_json_error(send, 405, "method_not_allowed", message, {"Allow": SERVED_METHODS})
            return
        token = bearer_token(scope)
        if token is None:
            message = f"missing bearer token: send `Authorization: Bearer <{self.credential}>`"
            challenge = {"WWW-Authenticate": f'Bearer realm="{self.realm}"'}
            await send_json_error(send, 401, "unauthorized", message, challenge)
            return
        path_params: Mapping[str, Any] = scope.get("path_params", {})
        attempt = Attempt(client_address(scope.get("client")), self.throttle_target(path_params, token))
        try:
            with self.throttle.guard(attempt):
                identity = await anyio.to_thread.run_sync(self.authenticate, path_params, token)
        except Exception as exc:  # noqa: BLE001 - every failure is answered: 401/403/429 by the table, else 503
            await self._refuse(send, exc, path_params)
            return
        await serve_stateless(self.build_server(identity), self.security(), scope, receive, without_echo(send))

    async def _refuse(self, send: Send, exc: Exception, path_params: Mapping[str, Any]) -> None:
        for error_type, status in STATUS_BY_AUTH_ERROR:
            if isinstance(exc, error_type):
                headers: dict[str, str] = {}
                if status == 401:
                    headers["WWW-Authenticate"] = f'Bearer realm="{self.realm}", error="invalid_token"'
                if isinstance(exc, ThrottledError):
                    headers["Retry-After"] = str(exc.retry_after)
                await send_json_error(send, status, exc.code, exc.message, headers)
                return
        # The database is unreachable or similar: say so rather than crash with a 500.
        log.error("cannot authenticate an MCP request for %s", dict(path_params), exc_info=exc)
        await send_json_error(send, 503, "unavailable", "chatbox cannot serve this request now; retry", {})
