"""The connector port: the one send signature every platform implements.

`send(ctx, msg) -> SentMessage` is the whole outbound surface. In-process connectors (Telegram,
Slack) implement it with their platform's API; container platforms (Signal, Discord) are reached over
HTTP by one adapter (`chatbox.adapters.http_container`, see `connectors/CONTRACT.md`). The core only
ever sees this protocol and the typed errors of `chatbox.domain.errors`.

Example:
    ```python
    connector = runtime.platforms.connector("telegram")  # ConnectorUnavailableError without one
    sent = connector.send(ctx, OutboundMessage(chat_id="-1001234567", text="hello"))
    sent.external_id  # the platform's id of the message, as inbound `external_message_id`s spell it
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# The container-connector contract (`connectors/CONTRACT.md`): where chatbox POSTs a send, and how it
# authenticates (the account's `mcp_proxy_auth` credential named in the connection's config).
OUTBOUND_URL = "outbound_url"
OUTBOUND_CREDENTIAL = "outbound_credential_id"
OUTBOUND_AUTH_SECRET = "outbound_auth"
# Set by chatbox alone (a tenant cannot): the connection's program runs beside chatbox on loopback, at an
# `outbound_url` chatbox chose, so that URL is trusted as chatbox's own (`chatbox.services.connector_programs`).
MANAGED_PROGRAM = "managed"


@dataclass(frozen=True)
class ConnectionContext:
    """One active connection as a connector sees it: its stored config and its secrets, opened.

    `secrets` holds the connection's platform secrets by name (e.g. `bot_token`) and, when the
    connection names an `outbound_credential_id`, that credential's value under `outbound_auth`.
    """

    connection_id: str
    platform: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class OutboundMessage:
    """What to send: `chat_id` is the platform's own chat id (the part after `<platform>:`).

    `options` are the platform's send options (its spec's `send_options` model, dumped); a
    connector validates them with that model, so an empty mapping means the defaults.

    Idempotent sends (every send chatbox makes carries them):
    - `send_id` names this send and stays the same on every retry of it: a connector that can hand the platform
      an idempotency token derives it from this (Discord's `nonce`; the container contract's `request_id`).
    - `parts_sent`: the platform ids of the leading parts of the split text that already went out on an
      earlier attempt; the connector sends only the parts after them.
    - `uncertain_since`: set (epoch seconds of the earlier attempt) when the part after `parts_sent` may
      already have gone out (an earlier attempt had no answer): the connector must find out before sending
      it again, and raise `UnknownOutcomeError` when it cannot tell.
    """

    chat_id: str
    text: str
    reply_to: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    send_id: str | None = None
    parts_sent: tuple[str, ...] = ()
    uncertain_since: float | None = None


@dataclass(frozen=True)
class SentMessage:
    """The platform's id of the sent message (of its first part when a long text went out in several), and
    the ids of all its parts in order (`part_ids`; just `external_id` when the connector names no parts)."""

    external_id: str
    part_ids: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        return self.part_ids or (self.external_id,)


class Connector(Protocol):
    """Sends one message on one platform.

    A send whose request left and got no answer (a read timeout, a reset) is never reported as unavailable:
    the connector finds out what it can and raises `UnknownOutcomeError`; `ConnectorUnavailableError` means the
    request never reached the platform (safe to retry). Errors after some parts went out say so
    (`ConnectorError.parts_sent`).

    Raises:
        UnknownOutcomeError: the platform may or may not have posted the message (or its next part).
        PlatformRefusedError: the platform refused this message (unknown chat, blocked, too long).
        RateLimitedError: the platform asks to slow down (`retry_after` seconds when known).
        ConnectorUnavailableError: the platform or the connector cannot be reached or is misconfigured.
    """

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage: ...

    def close(self) -> None: ...
