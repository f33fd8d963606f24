"""Discord's platform spec: a container connector (gateway client) that talks to chatbox over HTTP."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from chatbox.ports.connector import OUTBOUND_CREDENTIAL, OUTBOUND_URL
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec


class DiscordSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    silent: bool = Field(default=False, description="Send without a push notification (@silent).")


SPEC = PlatformSpec(
    name="discord",
    label="Discord",
    mode=PlatformMode.container,
    summary="Discord through a gateway-client container: it posts inbound to the connection's ingest_url with "
    "the inbound token, and chatbox sends through its outbound_url (connectors/CONTRACT.md).",
    send_options=DiscordSendOptions,
    send_notes="Options: silent (no push notification).",
    config=(
        ConnectionField(OUTBOUND_URL, "the connector's send URL, e.g. http://discord-connector:8080/v1/send", False),
        ConnectionField(OUTBOUND_CREDENTIAL, "an mcp_proxy_auth credential chatbox presents to the connector", False),
    ),
)
