"""The ingest port: what a webhook-mode platform provides so the core can take its pushes.

A webhook platform pushes its native events to `POST /v1/ingest/{platform}/{connection_id}`. The core
owns the route, the connection lookup, the durable accept and the ack (`chatbox.services.ingest`);
the platform's connector (`connectors/<platform>/`) owns everything platform-shaped:

- `verify`: is this request really from the platform, for this connection? (secret token, signature)
- `parse`: the raw body as an immediate reply (Slack's url_verification) or normalized messages
  (possibly none: an update chatbox does not handle is acknowledged and dropped). No network.
- `provision` / `deprovision`: connection lifecycle. On create, check the credentials with the
  platform and register the webhook; what the connector learns comes back as config and secrets
  for the core to store (secrets sealed). On archive, unregister.

The same object also implements the outbound `Connector` port (`send`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chatbox.domain.errors import ChatboxError
from chatbox.ports.connector import ConnectionContext, Connector

if TYPE_CHECKING:
    # The normalized message models load with what parses or stores messages, not with the contract.
    from chatbox.domain.normalized import InboundMessage


class WebhookUnauthenticatedError(ChatboxError):
    """The request carries no proof it comes from the platform (missing header, unknown connection): 401."""

    code = "unauthorized"


class WebhookForbiddenError(ChatboxError):
    """The request's proof is wrong (secret token or signature mismatch, stale timestamp): 403."""

    code = "forbidden"


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
    one delivery share it, so the core can ack a repeat without touching the database. The durable
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


class WebhookConnector(Connector, Protocol):
    """A webhook-mode platform connector: ingest (verify, parse), lifecycle (provision, deprovision), and send.

    Raises (per method):
        verify: WebhookUnauthenticatedError (no proof), WebhookForbiddenError (wrong proof).
        parse: InvalidInputError for a body that is not one of the platform's events.
        provision: InvalidInputError (missing or refused credentials, an ingest URL the platform
            will not call), ConnectorUnavailableError (the platform cannot be reached).
        deprovision: ConnectorUnavailableError; callers treat it as best effort.
    """

    def verify(self, ctx: ConnectionContext, request: WebhookRequest) -> None: ...

    def parse(self, ctx: ConnectionContext, request: WebhookRequest) -> IngestOutcome: ...

    def provision(self, request: ProvisionRequest) -> Provisioned: ...

    def deprovision(self, ctx: ConnectionContext) -> None: ...
