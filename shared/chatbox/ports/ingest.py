"""The ingest port: what a webhook-mode platform (Telegram, Slack) provides so the core can take its pushes.

A webhook platform pushes its native events to `POST /v1/ingest/{platform}/{connection_id}`. The core
owns the route, the connection lookup, the durable accept and the ack; the platform's connector
(`connectors/<platform>/`) owns everything platform-shaped, through this protocol:

- `verify`: is this request really from the platform, for this connection? (secret token, signature)
- `parse`: the raw body as an immediate reply (Slack's url_verification) or normalized messages
  (possibly none: an update chatbox does not handle is acknowledged and dropped). No network.
- `provision` / `deprovision`: connection lifecycle. On create, check the credentials with the
  platform and register the webhook; what the connector learns comes back as config and secrets
  for the core to store (secrets sealed). On archive, unregister.

The same object also implements the outbound `Connector` port (`send`).

Example:
    ```python
    webhooks = WebhookRegistry({"telegram": TelegramConnector(api_root)})
    platform = webhooks.get("telegram")  # None when this process has no such connector
    platform.verify(connection, request)  # WebhookUnauthenticatedError / WebhookForbiddenError
    outcome = platform.parse(connection, request)  # InvalidInputError for a body that is not an event
    ```
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatbox.domain.errors import ChatboxError
from chatbox.domain.normalized import InboundMessage
from chatbox.ports.connector import Connector, SendTarget


class WebhookUnauthenticatedError(ChatboxError):
    """The request carries no proof it comes from the platform (missing header, unknown connection): 401."""

    code = "unauthorized"


class WebhookForbiddenError(ChatboxError):
    """The request's proof is wrong (secret token or signature mismatch, stale timestamp): 403."""

    code = "forbidden"


@dataclass(frozen=True)
class WebhookConnection:
    """One active connection as the ingest path sees it: its stored config and its secrets opened."""

    connection_id: str
    platform: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class WebhookRequest:
    """The raw request: header names lower-cased, the body exactly as received (signatures cover the bytes)."""

    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ImmediateReply:
    """An answer the platform expects instead of an ack (e.g. Slack's url_verification challenge)."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class IngestOutcome:
    """What one webhook request carried.

    `delivery_key` names the platform's delivery (Telegram `update_id`, Slack `event_id`): retries of
    one delivery share it, so the route can ack a repeat without touching the database. The durable
    idempotency key stays each message's `external_message_id`.
    """

    messages: Sequence[InboundMessage] = ()
    reply: ImmediateReply | None = None
    delivery_key: str | None = None
    ignored: str | None = None  # why nothing was taken, for logs and the ack body


@dataclass(frozen=True)
class ProvisionRequest:
    """A connection being created (or resynced): what the connector needs to set it up with the platform."""

    connection_id: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)
    ingest_url: str = ""


@dataclass(frozen=True)
class Provisioned:
    """What the platform told the connector: config to merge into the connection's, secrets to seal and keep."""

    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


class WebhookPlatform(Connector, Protocol):
    """A webhook-mode platform connector: ingest (verify, parse), lifecycle (provision, deprovision), and send.

    Raises (per method):
        verify: WebhookUnauthenticatedError (no proof), WebhookForbiddenError (wrong proof).
        parse: InvalidInputError for a body that is not one of the platform's events.
        provision: InvalidInputError (missing or refused credentials, an ingest URL the platform
            will not call), ConnectorUnavailableError (the platform cannot be reached).
        deprovision: ConnectorUnavailableError; callers treat it as best effort.
    """

    def verify(self, connection: WebhookConnection, request: WebhookRequest) -> None: ...

    def parse(self, connection: WebhookConnection, request: WebhookRequest) -> IngestOutcome: ...

    def provision(self, request: ProvisionRequest) -> Provisioned: ...

    def deprovision(self, connection: WebhookConnection) -> None: ...

    def close(self) -> None: ...


class WebhookRegistry:
    """Platform name -> webhook platform connector. Composition roots fill it; empty means no webhook platforms.

    Entries may be factories: a platform's connector (and its SDK, which costs a Lambda cold start
    hundreds of milliseconds) is then built on first use, so a process that never meets that platform
    never loads it.
    """

    def __init__(
        self,
        platforms: Mapping[str, WebhookPlatform] | None = None,
        factories: Mapping[str, Callable[[], WebhookPlatform]] | None = None,
    ) -> None:
        self._platforms = dict(platforms or {})
        self._factories = dict(factories or {})
        self._lock = threading.Lock()

    def get(self, platform: str) -> WebhookPlatform | None:
        built = self._platforms.get(platform)
        if built is not None or platform not in self._factories:
            return built
        with self._lock:
            if platform not in self._platforms:
                self._platforms[platform] = self._factories[platform]()
            return self._platforms[platform]

    def platforms(self) -> frozenset[str]:
        return frozenset(self._platforms) | frozenset(self._factories)

    def factories(self) -> dict[str, Callable[[], WebhookPlatform]]:
        return dict(self._factories)

    def senders(self) -> dict[str, Connector]:
        """The same connectors seen through the outbound port, for the ConnectorRegistry (built on first send)."""
        return {name: _DeferredSender(self, name) for name in self.platforms()}

    def close(self) -> None:
        with self._lock:
            built = list(self._platforms.values())
        for platform in built:
            platform.close()


class _DeferredSender:
    """The outbound face of a registry entry that may not be built yet."""

    def __init__(self, registry: WebhookRegistry, platform: str) -> None:
        self._registry = registry
        self._platform = platform

    def send(
        self,
        connection: SendTarget,
        chat_external_id: str,
        text: str,
        reply_to: str | None,
        options: Mapping[str, Any],
    ) -> str:
        connector = self._registry.get(self._platform)
        assert connector is not None  # the registry lists only platforms it can build
        return connector.send(connection, chat_external_id, text, reply_to, options)
