"""The Discord program's environment: the relay's variables plus the bot token and the API root."""

from __future__ import annotations

from pydantic import Field, field_validator

from connectors.relay.settings import RelaySettings, Secret

DEFAULT_API_URL = "https://discord.com/api/v10"


class DiscordSettings(RelaySettings):
    discord_bot_token: Secret = Field(description="the bot's token (Developer Portal → Bot → Token)")
    discord_api_url: str = Field(
        default=DEFAULT_API_URL,
        description="Discord's REST root; the gateway URL comes from GET {this}/gateway/bot, so a stand-in works",
    )

    @field_validator("discord_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("discord_bot_token")
    @classmethod
    def _token_shape(cls, value: Secret) -> Secret:
        # A token pasted with its "Bot " prefix, or with a line break from a secrets file, is the usual mistake.
        token = value.get_secret_value()
        if token.startswith("Bot ") or any(ch.isspace() for ch in token):
            raise ValueError("must be the bare token (no 'Bot ' prefix, no spaces or line breaks)")
        return value
