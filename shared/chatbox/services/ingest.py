"""Ingest dispatch: a platform's push or a connector's post in, a reply out (as Bolt's `App.dispatch`).

The web face only translates an HTTP request into `dispatch_webhook` / `accept_posted` and the
reply back; everything else happens here: connection lookup, the platform's verification and
parsing, the durable accept, the ack. No platform API call happens on this path.

It is the hottest path, so a request costs one trip to the database thread: connections already
looked up are remembered for `connection_ttl` seconds with their secrets opened (archiving still takes
effect at once, as the accept re-reads the connection; a new secret from a resync works at once,
while the replaced one may still pass for up to that long in a warm process), deliveries already
taken (Telegram `update_id`, Slack `event_id`) are acked without touching the database, and inbound
tokens already proven are remembered by hash. The caches belong to the dispatcher, which belongs
to the runtime: nothing is kept in module globals.

Failed proofs are throttled (`chatbox.services.throttle`): a client that keeps failing against one
connection is refused before any lookup, with `Retry-After`. Webhook pushes count per (client, connection)
only, since every tenant's pushes come from the platform's same addresses; posts with an inbound token
also count per client, across every bearer-secret surface.

| webhook outcome | status |
|---|---|
| no such webhook platform in this process | 404 |
| this client failed too often against this connection lately | 429 + `Retry-After` |
| unknown, archived or other-platform connection; missing proof | 401 |
| wrong secret token / signature / stale timestamp | 403 |
| a body that is not one of the platform's events | 400 |
| accepted, duplicate, ignored update, archived mailbox | 200 |
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatbox.domain.errors import AuthenticationError, ConflictError, ForbiddenError, InvalidInputError, ThrottledError
from chatbox.domain.ids import hash_token, is_valid_id
from chatbox.domain.normalized import AcceptResult, InboundMessage
from chatbox.domain.schemas import ConnectionStatus
from chatbox.domain.vault import Vault
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.ingest import WebhookForbiddenError, WebhookRequest, WebhookUnauthenticatedError
from chatbox.ports.platforms import PlatformRegistry
from chatbox.ports.queue import DeliveryQueue
from chatbox.services.accepts import accepts_for
from chatbox.services.connections import connection_context
from chatbox.services.inbound import authenticate_inbound
from chatbox.services.throttle import Attempt, AuthThrottle
from chatbox.store.database import Database
from chatbox.store.models import Connection

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

CONNECTION_TTL = 60.0
_ACK = b'{"ok":true}'


class Recent(Generic[K, V]):
    """A bounded, thread-safe map whose entries expire `ttl` seconds after they were put (LRU beyond capacity).

    With `size_of` and `max_bytes`, the entries' estimated sizes are bounded too: keys a platform chooses may be
    long, and a count alone bounds nothing in bytes."""

    def __init__(
        self, capacity: int, ttl: float, *, max_bytes: int | None = None, size_of: Callable[[K], int] | None = None
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._bytes = 0
        # key -> (when it was put, value, its size): the size is kept so an eviction need not estimate it again.
        self._items: OrderedDict[K, tuple[float, V, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """The entries' estimated size (0 without `size_of`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _forget(self, key: K) -> None:
        # Called with the lock held, for a key that is present.
        self._bytes -= self._items.pop(key)[2]

    def _over(self) -> bool:
        if len(self._items) > self.capacity:
            return True
        return self.max_bytes is not None and self._bytes > self.max_bytes

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl:
                self._forget(key)
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._items:
                self._forget(key)
            size = 0 if self._size_of is None else self._size_of(key)
            self._items[key] = (time.monotonic(), value, size)
            self._bytes += size
            while self._items and self._over():
                self._forget(next(iter(self._items)))

    def discard(self, key: K) -> None:
        with self._lock:
            if key in self._items:
                self._forget(key)


# What one `_taken` entry costs in memory: its two strings and key tuple, plus the map's node, the (time, value)
# pair and the float (about 168 bytes measured with tracemalloc on CPython 3.11).
_TAKEN_ENTRY_OVERHEAD = 168 + sys.getsizeof(("", ""))
TAKEN_MAX_BYTES = 8 * 1024 * 1024


def taken_entry_size(key: tuple[str, str]) -> int:
    return _TAKEN_ENTRY_OVERHEAD + sys.getsizeof(key[0]) + sys.getsizeof(key[1])


@dataclass(frozen=True)
class IngestReply:
    """What to answer the platform: status, body, content type, extra headers."""

    status: int
    body: bytes = _ACK
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, code: str, message: str) -> IngestReply:
        headers = {"WWW-Authenticate": "Webhook"} if status == 401 else {}
        return cls(status, json.dumps({"code": code, "message": message}).encode(), headers=headers)

    @classmethod
    def throttled(cls, exc: ThrottledError) -> IngestReply:
        reply = cls.error(429, exc.code, exc.message)
        reply.headers["Retry-After"] = str(exc.retry_after)
        return reply


class IngestDispatcher:
    """Takes inbound for one process: webhook pushes and connector posts. Thread-safe; async methods run
    their database work on the database thread (`Database.run`)."""

    def __init__(
        self,
        db: Database,
        vault: Vault,
        queue: DeliveryQueue,
        platforms: PlatformRegistry,
        throttle: AuthThrottle,
        *,
        connection_ttl: float = CONNECTION_TTL,
    ) -> None:
        self.db = db
        self.vault = vault
        self.queue = queue
        self.platforms = platforms
        self.throttle = throttle
        self._connections: Recent[str, ConnectionContext] = Recent(4096, connection_ttl)
        # Deliveries already taken, acked without the database; only a shortcut (the accept's unique key catches
        # any copy it misses), so bounded to a few MB: about 23,000 Telegram updates at typical sizes.
        self._taken: Recent[tuple[str, str], bool] = Recent(
            65_536, 3600.0, max_bytes=TAKEN_MAX_BYTES, size_of=taken_entry_size
        )
        self._known_tokens: Recent[tuple[str, str], bool] = Recent(4096, float("inf"))
        self._accepts = accepts_for(db, queue)

    # --- container connectors and anything else holding an inbound token -----------------------

    async def authenticate_posted(self, connection_id: str, token: str, *, client: str) -> None:
        """Return when `token` is the inbound token of the active connection.

        Args:
            client: the caller's address (`chatbox.services.throttle.client_address`).

        Raises:
            AuthenticationError: a wrong token, or an unknown or archived connection (counted as a failure).
            ForbiddenError: the connection's platform is not one whose inbound arrives on this route (a
                webhook-mode platform's pushes are proven by the platform's own secret or signature, at its
                ingest path).
            ThrottledError: `client` failed too often lately; nothing was checked.
        """
        pair = (connection_id, hash_token(token))
        with self.throttle.guard(Attempt(client, f"inbound:{connection_id}")):
            if self._known_tokens.get(pair) is None:
                await self.db.run(self._authenticate, connection_id, token)
                self._known_tokens.put(pair, True)

    async def accept_posted(
        self, connection_id: str, message: InboundMessage, *, token: str | None = None
    ) -> AcceptResult:
        """Accept one normalized message of an authenticated connection (see `accept_inbound`).

        `token`, the inbound token it was proven with, is checked again against the connection as it is
        read to accept: a token rotated away stops working at once, though this process remembered it.
        """
        try:
            [result] = await self._accepts.accept(connection_id, [message], token=token)
            return result
        except AuthenticationError:
            if token is not None:
                self._known_tokens.discard((connection_id, hash_token(token)))
            raise

    # --- webhook-mode platforms ----------------------------------------------------------------

    async def dispatch_webhook(
        self, platform: str, connection_id: str, request: WebhookRequest, *, client: str
    ) -> IngestReply:
        """Verify, parse and accept one push of a webhook platform from `client` (its address); the reply the
        platform gets."""
        webhook = self.platforms.webhook(platform)
        if webhook is None:
            # The path's words are not repeated: they may be anything (README, "Security notes").
            return IngestReply.error(404, "not_found", "this deployment takes no webhooks of that platform")
        proof = Attempt(client, f"webhook:{connection_id}", per_client=False)
        try:
            self.throttle.check(proof)
        except ThrottledError as exc:
            return IngestReply.throttled(exc)
        remembered = self._connections.get(connection_id)
        connection = remembered if remembered is not None and remembered.platform == platform else None
        for attempt in (1, 2):
            if connection is None:
                connection = await self.db.run(self._load_connection, platform, connection_id)
                if connection is None:
                    self.throttle.record_failure(proof)
                    return IngestReply.error(401, "unauthorized", f"no active {platform} connection has that id")
                self._connections.put(connection_id, connection)
            try:
                webhook.verify(connection, request)
                break
            except (WebhookUnauthenticatedError, WebhookForbiddenError) as exc:
                if attempt == 1 and connection is remembered:
                    connection = None  # the secret may have changed since it was remembered (resync): look again
                    continue
                self.throttle.record_failure(proof)
                status = 401 if isinstance(exc, WebhookUnauthenticatedError) else 403
                return IngestReply.error(status, exc.code, exc.message)
        assert connection is not None  # the loop above returned or verified one
        try:
            outcome = webhook.parse(connection, request)
        except InvalidInputError as exc:
            return IngestReply.error(400, "bad_request", exc.message)
        if outcome.reply is not None:
            return IngestReply(outcome.reply.status, outcome.reply.body, outcome.reply.content_type)
        taken_key = (connection_id, outcome.delivery_key) if outcome.delivery_key else None
        if not outcome.messages or (taken_key is not None and self._taken.get(taken_key)):
            return IngestReply(200)
        try:
            await self._accepts.accept(connection_id, outcome.messages)
        except AuthenticationError:  # archived since it was remembered
            self._connections.discard(connection_id)
            return IngestReply.error(401, "unauthorized", f"no active {platform} connection has that id")
        except ConflictError as exc:
            # An archived mailbox takes nothing; answering an error would only make the platform retry.
            log.info("dropped a %s webhook for connection %s: %s", platform, connection_id, exc.message)
            return IngestReply(200)
        if taken_key is not None:
            self._taken.put(taken_key, True)
        return IngestReply(200)

    # --- on the database thread ------------------------------------------------------------------

    def _authenticate(self, connection_id: str, token: str) -> None:
        with self.db.session() as db:
            platform = authenticate_inbound(db, connection_id, token)
        spec = self.platforms.get(platform)
        if spec is None:
            raise ForbiddenError(f"connection {connection_id} is on {platform}, which this deployment does not serve")
        if spec.receives_webhooks:
            raise ForbiddenError(
                f"connection {connection_id} is a {spec.label} connection: {spec.label} delivers its updates to "
                f"/v1/ingest/{platform}/{connection_id}, proven by the platform's own secret or signature; "
                "its inbound token is not accepted on this route"
            )

    def _load_connection(self, platform: str, connection_id: str) -> ConnectionContext | None:
        if not is_valid_id("connection", connection_id):
            return None
        with self.db.session() as db:
            connection = db.get(Connection, connection_id)
            if connection is None or connection.status != ConnectionStatus.active or connection.platform != platform:
                return None
            return connection_context(db, self.vault, connection)
