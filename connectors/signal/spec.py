"""Signal's platform spec: a container connector (signal-cli) that talks to chatbox over HTTP."""

from __future__ import annotations

from chatbox.ports.connector import OUTBOUND_CREDENTIAL, OUTBOUND_URL
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec

SPEC = PlatformSpec(
    name="signal",
    label="Signal",
    mode=PlatformMode.container,
    summary="Signal through a signal-cli container: it posts inbound to the connection's ingest_url with the "
    "inbound token, and chatbox sends through its outbound_url (connectors/CONTRACT.md).",
    send_notes="reply_to is the quoted message's timestamp.",
    config=(
        ConnectionField(OUTBOUND_URL, "the connector's send URL, e.g. http://signal-connector:8080/v1/send", False),
        ConnectionField(OUTBOUND_CREDENTIAL, "an mcp_proxy_auth credential chatbox presents to the connector", False),
    ),
)
