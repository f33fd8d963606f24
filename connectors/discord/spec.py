"""Discord's platform spec: a container connector (gateway client) that talks to chatbox over HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chatbox.domain.errors import InvalidInputError
from chatbox.ports.connector import OUTBOUND_CREDENTIAL, OUTBOUND_URL, ConnectionContext
from chatbox.ports.platforms import ConnectionField, ConnectorProgram, PlatformMode, PlatformSpec

DEFAULT_API_URL = "https://discord.com/api/v10"


class DiscordSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    silent: bool = Field(default=False, description="Send without a push notification (@silent).")


def _check_program_input(config: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    if not secrets.get("bot_token"):
        raise InvalidInputError("secrets.bot_token is needed: the bot's token from the Discord developer portal")
    url = config.get("api_url", DEFAULT_API_URL)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"config.api_url must be Discord's REST API root, e.g. {DEFAULT_API_URL}")


def _program_env(ctx: ConnectionContext) -> dict[str, str]:
    return {
        "DISCORD_BOT_TOKEN": ctx.secrets.get("bot_token", ""),
        "DISCORD_API_URL": str(ctx.config.get("api_url", DEFAULT_API_URL)),
    }


SPEC = PlatformSpec(
    name="discord",
    label="Discord",
    mode=PlatformMode.container,
    summary="Discord through a gateway-client container: it posts inbound to the connection's ingest_url with "
    "the inbound token, and chatbox sends through its outbound_url (connectors/CONTRACT.md). Without outbound_url, "
    "chatbox dev/api runs the program itself with the connection's bot token.",
    send_options=DiscordSendOptions,
    send_notes="Options: silent (no push notification).",
    secrets=(ConnectionField("bot_token", "the bot's token (needed when chatbox runs the program)", False),),
    config=(
        ConnectionField("api_url", f"Discord's REST API root (default {DEFAULT_API_URL}; a stand-in in tests)", False),
        ConnectionField(OUTBOUND_URL, "the connector's send URL, e.g. http://discord-connector:8080/v1/send", False),
        ConnectionField(OUTBOUND_CREDENTIAL, "an mcp_proxy_auth credential chatbox presents to the connector", False),
    ),
    program=ConnectorProgram("connectors.discord", env=_program_env, check_input=_check_program_input),
)
