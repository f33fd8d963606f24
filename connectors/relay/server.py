"""The HTTP face of a container program: the contract's `POST /v1/send` and `GET /healthz`.

The program supplies two async callbacks; everything about HTTP (bearer check, body validation,
error bodies, status codes) lives here, so every program answers chatbox the same way:

| the send handler | status | body |
|---|---|---|
| returns `message_id` | 200 | `{"message_id": "..."}` |
| raises `SendRefused(status, code, message)` | `status` (400, 403, 404, 413 or 422) | `{"code", "message"}` |
| raises `RateLimited(retry_after)` | 429 + `Retry-After` | `{"code": "rate_limited", "message", "retry_after"}` |
| raises `PlatformDown(message)` | 503 | `{"code": "platform_unavailable", "message"}` |
| raises `OutcomeUnknown(message)` | 504 | `{"code": "unknown_outcome", "message"}`: the platform may have posted it |
| raises anything else | 502 | `{"code": "connector_error", ...}` (logged with its traceback) |

A handler may return `Sent(message_id, part_ids)` instead of the id alone (a long text sent as several
messages); an error after some parts went out carries them (`SendError.parts_sent`, `parts_total`), and the
answer says so (`"parts_sent": [...]`, `"parts_total"`). The server records each send's outcome by
`request_id`: a second POST of a sent `request_id` answers the recorded id without calling the handler, and
`GET /v1/sends/{request_id}` answers what the POST answered (or 409 while it runs, 404 when it never came).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NamedTuple

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connectors.relay.media import MediaHandlers, MediaRoutes

log = logging.getLogger("connectors.relay.server")

_REFUSAL_STATUSES = frozenset({400, 403, 404, 413, 422})
MAX_BODY_BYTES = 1 << 20
_REMEMBERED_SENDS = 1024

Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class SendRequest(BaseModel):
    """The body chatbox posts to `/v1/send` (CONTRACT.md, "Outbound"). Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Id
    connection_id: Id
    platform: Id
    chat_id: Id
    text: Annotated[str, StringConstraints(max_length=65_536)]
    reply_to: Annotated[str, StringConstraints(max_length=255)] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Ids of the leading parts of the split text that went out on an earlier attempt: send only the rest.
    parts_sent: Annotated[list[Id], Field(max_length=64)] = Field(default_factory=list)
    # Set (epoch seconds) when an earlier attempt got no answer: the next part may have gone out already.
    uncertain_since: float | None = None


class Sent(NamedTuple):
    """What a send handler may return for a text sent as several messages: the first's id and every part's."""

    message_id: str
    part_ids: tuple[str, ...]


class ActionRequest(BaseModel):
    """The body chatbox posts to `/v1/edit`, `/v1/delete`, `/v1/react`, `/v1/typing` (CONTRACT.md, "Message
    actions"): the chat, the message acted on (all but typing), and the action's own fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: Id
    connection_id: Id
    platform: Id
    chat_id: Id
    message_id: Id | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=65_536)] | None = None
    emoji: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    remove: bool = False


# The action paths, and the field each needs beyond chat_id.
ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "edit": ("message_id", "text"),
    "delete": ("message_id",),
    "react": ("message_id", "emoji"),
    "typing": (),
}


class SendError(Exception):
    """Base of what a send handler raises; never raise it directly."""

    status = 502
    code = "connector_error"
    parts_sent: tuple[str, ...] = ()  # the leading parts that went out before the error
    parts_total: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"parts_sent": list(self.parts_sent), "parts_total": self.parts_total}
        return {"code": self.code, "message": self.message, **(extra if self.parts_sent else {})}


class SendRefused(SendError):
    """The platform refused this message or chat (bad recipient, blocked, too long): the agent should change it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        if status not in _REFUSAL_STATUSES:
            raise ValueError(f"a refusal is one of {sorted(_REFUSAL_STATUSES)}, not {status}")
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(SendError):
    status = 429
    code = "rate_limited"

    def __init__(self, retry_after: float, message: str = "the platform is rate limiting sends") -> None:
        super().__init__(message)
        self.retry_after = max(0.0, retry_after)


class PlatformDown(SendError):
    """The platform (or its local daemon) cannot be reached or is misconfigured: try again later."""

    status = 503
    code = "platform_unavailable"


class OutcomeUnknown(SendError):
    """The request to the platform left and no answer came (a timeout, a reset), and the program could not find
    out: the message may have been posted. chatbox tells the agent so and never re-sends it blindly."""

    status = 504
    code = "unknown_outcome"


SendHandler = Callable[[SendRequest], Awaitable[str | Sent]]
ActionHandler = Callable[[ActionRequest], Awaitable[None]]
HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


class SendServer:
    """Builds the aiohttp application; `in_flight` counts sends being handled (the runner drains them on stop)."""

    def __init__(
        self,
        outbound_auth: str,
        send: SendHandler,
        health: HealthCheck,
        actions: dict[str, ActionHandler] | None = None,
        *,
        media: MediaHandlers | None = None,
    ) -> None:
        self._expected = f"Bearer {outbound_auth}".encode()
        # `POST /v1/files` and `GET /v1/attachments/{id}` (connectors.relay.media), for a program that has them.
        self._media = MediaRoutes(media, self._authorized) if media is not None else None
        self._send = send
        self._health = health
        self._actions = dict(actions or {})
        self.in_flight = 0
        # chatbox sends a retry of the same send with the same request_id: a sent one gets the first answer.
        self._sent: OrderedDict[str, Sent] = OrderedDict()
        self._failed: OrderedDict[str, SendError] = OrderedDict()  # answered to GET /v1/sends/{request_id} only
        self._sending: dict[str, asyncio.Future[Sent]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/send", self.handle_send)
        app.router.add_get("/v1/sends/{request_id}", self.handle_lookup)
        app.router.add_get("/healthz", self.handle_health)
        if self._media is not None:
            self._media.add_to(app)
        for action in self._actions:
            app.router.add_post(f"/v1/{action}", self.handle_action)
        return app

    def _authorized(self, request: web.Request) -> bool:
        presented = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(presented, self._expected)

    async def handle_send(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(
                401, "unauthorized", "wrong or missing bearer token (the connection's outbound_credential_id)"
            )
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "invalid_json", "the body is not JSON")
        try:
            send = SendRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(422, "invalid_request", f"{where}: {first['msg']}")
        self.in_flight += 1
        try:
            sent = await self._send_once(send)
        except SendError as exc:
            log.warning("send failed", extra={"request_id": send.request_id, "status": exc.status, "code": exc.code})
            return _error_answer(exc)
        except Exception:
            log.exception("send handler crashed", extra={"request_id": send.request_id})
            return _error(502, "connector_error", "the connector failed to send; see its logs")
        finally:
            self.in_flight -= 1
        log.info("sent", extra={"request_id": send.request_id, "message_id": sent.message_id})
        return _sent_answer(sent)

    async def handle_action(self, request: web.Request) -> web.Response:
        """`POST /v1/{edit,delete,react,typing}`: 200 `{"ok": true}`, or the errors `/v1/send` answers."""
        action = request.path.rsplit("/", 1)[-1]
        if not self._authorized(request):
            return _error(
                401, "unauthorized", "wrong or missing bearer token (the connection's outbound_credential_id)"
            )
        try:
            payload = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        except (ValueError, RecursionError):
            return _error(400, "invalid_json", "the body is not JSON")
        try:
            act = ActionRequest.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            return _error(422, "invalid_request", f"{where}: {first['msg']}")
        missing = [name for name in ACTION_FIELDS[action] if getattr(act, name) is None]
        if missing:
            return _error(422, "invalid_request", f"{action} needs {', '.join(missing)}")
        self.in_flight += 1
        try:
            await self._actions[action](act)
        except SendError as exc:
            log.warning("action failed", extra={"request_id": act.request_id, "status": exc.status, "code": exc.code})
            if isinstance(exc, RateLimited):
                response = _error(429, exc.code, exc.message, retry_after=exc.retry_after)
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return response
            return _error(exc.status, exc.code, exc.message)
        except Exception:
            log.exception("action handler crashed", extra={"request_id": act.request_id})
            return _error(502, "connector_error", f"the connector failed to {action}; see its logs")
        finally:
            self.in_flight -= 1
        log.info("action done", extra={"request_id": act.request_id, "action": action})
        return web.json_response({"ok": True})

    async def handle_lookup(self, request: web.Request) -> web.Response:
        """What became of the send `request_id`: chatbox asks when its POST got no answer."""
        if not self._authorized(request):
            return _error(401, "unauthorized", "wrong or missing bearer token")
        request_id = request.match_info["request_id"]
        if (sent := self._sent.get(request_id)) is not None:
            return _sent_answer(sent)
        if request_id in self._sending:
            return _error(409, "in_flight", "this send is still running")
        if (failed := self._failed.get(request_id)) is not None:
            return _error_answer(failed)
        return _error(404, "unknown_send", "this connector has no record of that request_id")

    async def _send_once(self, send: SendRequest) -> Sent:
        if (known := self._sent.get(send.request_id)) is not None:
            return known
        if (running := self._sending.get(send.request_id)) is not None:
            return await asyncio.shield(running)
        earlier = self._failed.get(send.request_id)
        if send.uncertain_since is not None and earlier is not None and not isinstance(earlier, OutcomeUnknown):
            # chatbox lost this program's answer, but the program knows the last attempt failed for sure.
            send = send.model_copy(update={"uncertain_since": None})
        future: asyncio.Future[Sent] = asyncio.get_running_loop().create_future()
        self._sending[send.request_id] = future
        self._failed.pop(send.request_id, None)
        try:
            answered = await self._send(send)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            if isinstance(exc, SendError):
                _remember(self._failed, send.request_id, exc)
            future.set_exception(exc)
            future.exception()  # marks it retrieved when no duplicate waits on it
            raise
        finally:
            del self._sending[send.request_id]
        sent = answered if isinstance(answered, Sent) else Sent(answered, (answered,))
        future.set_result(sent)
        _remember(self._sent, send.request_id, sent)
        return sent

    async def handle_health(self, _request: web.Request) -> web.Response:
        try:
            ok, details = await self._health()
        except Exception as exc:
            log.exception("health check crashed")
            ok, details = False, {"error": type(exc).__name__}
        return web.json_response(details, status=200 if ok else 503)


def _remember(records: OrderedDict[str, Any], request_id: str, value: Any) -> None:
    records[request_id] = value
    while len(records) > _REMEMBERED_SENDS:
        records.popitem(last=False)


def _sent_answer(sent: Sent) -> web.Response:
    return web.json_response({"message_id": sent.message_id, "part_ids": list(sent.part_ids)})


def _error_answer(exc: SendError) -> web.Response:
    if isinstance(exc, RateLimited):
        response = web.json_response({**exc.body(), "retry_after": exc.retry_after}, status=429)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    return web.json_response(exc.body(), status=exc.status)
