"""Telegram's platform spec: what the core learns about Telegram (no SDK is imported here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbox.ports.connector import Connector
from chatbox.ports.live import LiveSource
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec

TelegramMode = Literal["auto", "webhook", "polling"]


class TelegramSettings(BaseSettings):
    """`CHATBOX_TELEGRAM_*`: where the Bot API is (a stand-in in tests, or a local Bot API server), and how
    updates arrive.

    `mode`: `webhook` registers the connection's ingest URL with setWebhook; `polling` fetches updates
    with getUpdates instead (no public URL needed; the process must run a live-source host, as
    `chatbox dev` and `chatbox api` do); `auto` polls unless the ingest URL is https on a public host.
    `poll_timeout`: seconds one getUpdates long poll waits for updates.
    """

    model_config = SettingsConfigDict(env_prefix="CHATBOX_TELEGRAM_", env_file=".env", extra="ignore")

    api_url: str = "https://api.telegram.org"
    mode: TelegramMode = "auto"
    poll_timeout: int = Field(default=25, ge=1, le=50)


class TelegramSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parse_mode: Literal["MarkdownV2", "HTML"] | None = Field(
        default=None, description="Telegram formatting of `text`; omit for plain text."
    )
    disable_notification: bool = Field(default=False, description="Deliver silently (no sound on the phone).")


def _connector(settings: TelegramSettings) -> Connector:
    from connectors.telegram.connector import TelegramConnector

    return TelegramConnector(settings.api_url, mode=settings.mode)


def _live_source(settings: TelegramSettings) -> LiveSource:
    from connectors.telegram.polling import TelegramPolling

    return TelegramPolling(settings.api_url, poll_timeout=settings.poll_timeout)


SPEC = PlatformSpec(
    name="telegram",
    label="Telegram",
    mode=PlatformMode.webhook,
    summary="A Telegram bot through the Bot API: with a public https CHATBOX_PUBLIC_URL chatbox registers its "
    "ingest URL with setWebhook and checks each push's secret token; without one (or with "
    "CHATBOX_TELEGRAM_MODE=polling) it fetches updates itself with getUpdates long polling.",
    send_options=TelegramSendOptions,
    send_notes="Options: parse_mode (MarkdownV2 or HTML), disable_notification.",
    secrets=(ConnectionField("bot_token", "the bot's token from @BotFather"),),
    settings=TelegramSettings,
    connector=_connector,
    live_source=_live_source,
    ingest_headers={
        "X-Telegram-Bot-Api-Secret-Token": "The secret_token chatbox registered with setWebhook",
    },
)
