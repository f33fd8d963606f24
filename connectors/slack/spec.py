"""Slack's platform spec: what the core learns about Slack (no SDK is imported here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbox.ports.connector import Connector
from chatbox.ports.live import LiveSource
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec

SlackMode = Literal["auto", "events", "socket"]


class SlackSettings(BaseSettings):
    """`CHATBOX_SLACK_*`: where the Web API is (a stand-in in tests), and how events arrive.

    `mode`: `events` is the Events API (Slack POSTs each event to the connection's ingest URL, signed with
    the signing secret); `socket` is Socket Mode (chatbox opens a WebSocket to Slack with the app-level
    token, so no public URL is needed; the process must run a live-source host, as `chatbox dev` and
    `chatbox api` do); `auto` uses Socket Mode unless the ingest URL is https on a public host.
    """

    model_config = SettingsConfigDict(env_prefix="CHATBOX_SLACK_", env_file=".env", extra="ignore")

    api_url: str = "https://slack.com/api/"
    mode: SlackMode = "auto"


class SlackSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_ts: str | None = Field(
        default=None, min_length=1, max_length=255, description="Reply in this thread (the parent's `ts`)."
    )
    reply_broadcast: bool = Field(default=False, description="With thread_ts: also post the reply to the channel.")
    unfurl_links: bool | None = Field(
        default=None, description="Let Slack expand link previews (true/false; omit for Slack's default)."
    )


def _connector(settings: SlackSettings) -> Connector:
    from connectors.slack.connector import SlackConnector

    return SlackConnector(settings.api_url, mode=settings.mode)


def _live_source(settings: SlackSettings) -> LiveSource:
    from connectors.slack.socket_mode import SlackSocketMode

    return SlackSocketMode(settings.api_url)


SPEC = PlatformSpec(
    name="slack",
    label="Slack",
    mode=PlatformMode.webhook,
    summary="A Slack app through the Events API (point the app's Event Subscriptions at the connection's "
    "ingest_url; chatbox verifies each request's v0 signature with the signing secret) or, without a public "
    "https CHATBOX_PUBLIC_URL (or with CHATBOX_SLACK_MODE=socket), through Socket Mode with an app-level token.",
    send_options=SlackSendOptions,
    send_notes="Options: thread_ts (reply in a thread), reply_broadcast, unfurl_links.",
    secrets=(
        ConnectionField("bot_token", "the app's Bot User OAuth Token, xoxb-…"),
        ConnectionField(
            "signing_secret", "Basic Information → App Credentials → Signing Secret (Events API)", required=False
        ),
        ConnectionField("app_token", "an app-level token with connections:write, xapp-… (Socket Mode)", required=False),
    ),
    settings=SlackSettings,
    connector=_connector,
    live_source=_live_source,
    ingest_headers={
        "X-Slack-Signature": "v0 HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}` with the signing secret",
        "X-Slack-Request-Timestamp": "Seconds since the epoch; older than 5 minutes is refused",
    },
)
