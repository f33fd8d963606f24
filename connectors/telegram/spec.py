"""Telegram's platform spec: what the core learns about Telegram (no SDK is imported here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbox.ports.connector import Connector
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec


class TelegramSettings(BaseSettings):
    """`CHATBOX_TELEGRAM_*`: where the Bot API is (a stand-in in tests, or a local Bot API server)."""

    model_config = SettingsConfigDict(env_prefix="CHATBOX_TELEGRAM_", env_file=".env", extra="ignore")

    api_url: str = "https://api.telegram.org"


class TelegramSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parse_mode: Literal["MarkdownV2", "HTML"] | None = Field(
        default=None, description="Telegram formatting of `text`; omit for plain text."
    )
    disable_notification: bool = Field(default=False, description="Deliver silently (no sound on the phone).")


def _connector(settings: TelegramSettings) -> Connector:
    from connectors.telegram.connector import TelegramConnector

    return TelegramConnector(settings.api_url)


SPEC = PlatformSpec(
    name="telegram",
    label="Telegram",
    mode=PlatformMode.webhook,
    summary="A Telegram bot through the Bot API in webhook mode: chatbox registers its ingest URL with "
    "setWebhook (CHATBOX_PUBLIC_URL must be public https) and checks each push's secret token.",
    send_options=TelegramSendOptions,
    send_notes="Options: parse_mode (MarkdownV2 or HTML), disable_notification.",
    secrets=(ConnectionField("bot_token", "the bot's token from @BotFather"),),
    settings=TelegramSettings,
    connector=_connector,
    ingest_headers={
        "X-Telegram-Bot-Api-Secret-Token": "The secret_token chatbox registered with setWebhook",
    },
)
