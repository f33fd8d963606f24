"""The ingest route: webhook-mode platforms (Telegram, Slack) push their native events here.

`POST /v1/ingest/{platform}/{connection_id}`: the platform's connector verifies the request (secret
token, signature) and turns the body into normalized messages; each is accepted durably; the
platform gets its 200 at once. No platform API call happens on this path.

Like the inbound route it is hot, so a request costs one trip to the database thread: connections
already looked up are remembered for a minute with their secrets opened (archiving still takes
effect at once, as the accept re-reads the connection; a new secret from a resync works at once,
while the replaced one may still pass for up to that minute in a warm process), and deliveries
already taken (Telegram `update_id`, Slack `event_id`) are acked without touching the database.

| outcome | status |
|---|---|
| no such platform in this process | 404 |
| unknown, archived or other-platform connection; missing proof | 401 |
| wrong secret token / signature / stale timestamp | 403 |
| a body that is not one of the platform's events | 400 |
| accepted, duplicate, ignored update, archived mailbox | 200 |
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, Request, Response, Security
from fastapi.security import APIKeyHeader

from chatbox.domain.errors import AuthenticationError, ConflictError, InvalidInputError
from chatbox.domain.ids import is_valid_id
from chatbox.domain.normalized import InboundMessage
from chatbox.ports.ingest import (
    WebhookConnection,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from chatbox.runtime import Runtime
from chatbox.services.connections import ACTIVE, webhook_connection
from chatbox.services.inbound import accept_inbound
from chatbox.store.models import Connection

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["ingest"])
K = TypeVar("K")
V = TypeVar("V")

CONNECTION_TTL = 60.0


class _Recent(Generic[K, V]):
    """A bounded, thread-safe map whose entries expire `ttl` seconds after they were put."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[key]
                return None
            return item[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)


_connections: _Recent[str, WebhookConnection] = _Recent(4096, CONNECTION_TTL)
_taken: _Recent[tuple[str, str], bool] = _Recent(65_536, 3600.0)

_ACK = b'{"ok":true}'

# Declared for the OpenAPI document only (the connector checks them): Telegram's secret token, or Slack's signature.
_telegram_secret = APIKeyHeader(
    name="X-Telegram-Bot-Api-Secret-Token",
    scheme_name="TelegramSecretToken",
    auto_error=False,
    description="The secret_token chatbox registered with setWebhook (Telegram connections)",
)
_slack_signature = APIKeyHeader(
    name="X-Slack-Signature",
    scheme_name="SlackSignature",
    auto_error=False,
    description="v0 HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}` with the signing secret (Slack connections)",
)


def forget_connection(connection_id: str) -> None:
    """Drop what this process remembers of a connection (as if its minute had passed)."""
    _connections.discard(connection_id)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, code: str, message: str) -> Response:
    headers = {"WWW-Authenticate": "Webhook"} if status == 401 else None
    return _json(status, {"code": code, "message": message}, headers)


def _load_connection(runtime: Runtime, platform: str, connection_id: str) -> WebhookConnection | None:
    if not is_valid_id("connection", connection_id):
        return None
    with runtime.db.session() as db:
        connection = db.get(Connection, connection_id)
        if connection is None or connection.status != ACTIVE or connection.platform != platform:
            return None
        return webhook_connection(db, runtime.vault, connection)


def _accept_all(runtime: Runtime, connection_id: str, messages: Sequence[InboundMessage]) -> int:
    """Accept each message; the number that were new (not duplicates)."""
    accepted = 0
    with runtime.db.session() as db:
        for message in messages:
            accepted += 0 if accept_inbound(db, runtime.queue, connection_id, message).duplicate else 1
    return accepted


async def _in_db_thread(runtime: Runtime, function: Callable[..., V], *args: Any) -> V:
    return await asyncio.get_running_loop().run_in_executor(runtime.db.executor, function, *args)


@router.post(
    "/ingest/{platform}/{connection_id}",
    summary="Receive a Telegram or Slack webhook (verified by the platform's secret token or signature)",
    response_class=Response,
    dependencies=[Security(_telegram_secret), Security(_slack_signature)],
    responses={
        200: {"description": "Taken (or deliberately ignored); Slack's url_verification gets its challenge"},
        400: {"description": "Not one of the platform's events"},
        401: {"description": "Unknown connection, or no proof of origin"},
        403: {"description": "Wrong secret token or signature, or a stale timestamp"},
        404: {"description": "This deployment serves no such platform"},
    },
)
async def ingest_webhook(platform: str, connection_id: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    webhook = runtime.webhooks.get(platform)
    if webhook is None:
        return _error(404, "not_found", f"this deployment takes no {platform} webhooks")
    incoming = WebhookRequest(request.headers, await request.body())
    remembered = _connections.get(connection_id)
    connection = remembered if remembered is not None and remembered.platform == platform else None
    for attempt in (1, 2):
        if connection is None:
            connection = await _in_db_thread(runtime, _load_connection, runtime, platform, connection_id)
            if connection is None:
                return _error(401, "unauthorized", f"no active {platform} connection {connection_id}")
            _connections.put(connection_id, connection)
        try:
            webhook.verify(connection, incoming)
            break
        except (WebhookUnauthenticatedError, WebhookForbiddenError) as exc:
            if attempt == 1 and connection is remembered:
                connection = None  # the secret may have changed since it was remembered (resync): look again
                continue
            return _error(401 if isinstance(exc, WebhookUnauthenticatedError) else 403, exc.code, exc.message)
    assert connection is not None  # the loop above returned or verified one
    try:
        outcome = webhook.parse(connection, incoming)
    except InvalidInputError as exc:
        return _error(400, "bad_request", exc.message)
    if outcome.reply is not None:
        reply = outcome.reply
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)
    taken_key = (connection_id, outcome.delivery_key) if outcome.delivery_key else None
    if not outcome.messages or (taken_key is not None and _taken.get(taken_key)):
        return Response(_ACK, media_type="application/json")
    try:
        await _in_db_thread(runtime, _accept_all, runtime, connection_id, outcome.messages)
    except AuthenticationError:  # archived since it was remembered
        _connections.discard(connection_id)
        return _error(401, "unauthorized", f"no active {platform} connection {connection_id}")
    except ConflictError as exc:
        # An archived mailbox takes nothing; answering an error would only make the platform retry.
        log.info("dropped a %s webhook for connection %s: %s", platform, connection_id, exc.message)
        return Response(_ACK, media_type="application/json")
    if taken_key is not None:
        _taken.put(taken_key, True)
    return Response(_ACK, media_type="application/json")
