"""The Connector port: how the core sends a message out through a platform.

Every platform implements the same surface. Webhook-mode platforms (Telegram, Slack) send directly
with their client library from `connectors/<platform>/`; container platforms (Signal, Discord) are
reached over HTTP by `chatbox.adapters.http_container.HttpContainerConnector` (see
`connectors/CONTRACT.md`). The core only ever sees this protocol and the typed errors below.

Example:
    ```python
    registry = ConnectorRegistry({"signal": HttpContainerConnector(policy)})
    connector = registry.get("signal")  # ConnectorUnavailableError for a platform without one
    message_id = connector.send(target, "+4915112345678", "hello", None, {})
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatbox.domain.errors import ConnectorUnavailableError

# The container-connector contract (`connectors/CONTRACT.md`): where chatbox POSTs a send, and how it
# authenticates (the account's `mcp_proxy_auth` credential named in the connection's config).
OUTBOUND_URL = "outbound_url"
OUTBOUND_CREDENTIAL = "outbound_credential_id"
OUTBOUND_AUTH_SECRET = "outbound_auth"


@dataclass(frozen=True)
class SendTarget:
    """The connection a send goes through, with its configuration and its secrets opened.

    `secrets` holds the connection's platform secrets by name (e.g. `bot_token`) and, when the
    connection names an `outbound_credential_id`, that credential's value under `outbound_auth`.
    """

    connection_id: str
    platform: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


class Connector(Protocol):
    """Sends one message on one platform.

    `send` returns the platform's id of the sent message, unique within the connection and in the
    same form the connector uses for inbound `external_message_id`s (so replies can reference it).

    Raises:
        PlatformRefusedError: the platform refused this message (unknown chat, blocked, too long).
        RateLimitedError: the platform asks to slow down (`retry_after` seconds when known).
        ConnectorUnavailableError: the platform or the connector cannot be reached or is misconfigured.
    """

    def send(
        self,
        connection: SendTarget,
        chat_external_id: str,
        text: str,
        reply_to: str | None,
        options: Mapping[str, Any],
    ) -> str: ...


class ConnectorRegistry:
    """Platform name -> connector. Composition roots decide which connectors a process has."""

    def __init__(self, connectors: Mapping[str, Connector] | None = None) -> None:
        self._connectors = dict(connectors or {})

    def get(self, platform: str) -> Connector:
        """The platform's connector; ConnectorUnavailableError when this process has none."""
        connector = self._connectors.get(platform)
        if connector is None:
            raise ConnectorUnavailableError(
                f"no {platform} connector is available yet: chatbox cannot send to {platform} chats "
                "from this deployment; tell the operator, or answer on another platform"
            )
        return connector

    def platforms(self) -> frozenset[str]:
        return frozenset(self._connectors)

    def close(self) -> None:
        for connector in self._connectors.values():
            close = getattr(connector, "close", None)
            if callable(close):
                close()
