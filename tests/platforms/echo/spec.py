"""The echo platform's spec: everything chatbox learns about it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbox.ports.connector import Connector
from chatbox.ports.live import LiveSource
from chatbox.ports.platforms import ConnectionField, PlatformMode, PlatformSpec


class EchoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHATBOX_ECHO_", extra="ignore")

    api_url: str = "http://127.0.0.1:9"


class EchoSendOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loud: bool = Field(default=False, description="Ring every device of the chat.")


def _connector(settings: EchoSettings) -> Connector:
    from tests.platforms.echo.connector import EchoConnector

    return EchoConnector(settings.api_url)


def _live_source(settings: EchoSettings) -> LiveSource:
    from tests.platforms.echo.live import EchoLiveSource

    return EchoLiveSource(settings.api_url)


SPEC = PlatformSpec(
    name="echo",
    label="Echo",
    mode=PlatformMode.webhook,
    summary="A test platform in webhook mode.",
    send_options=EchoSendOptions,
    send_notes="Options: loud.",
    secrets=(ConnectionField("api_key", "the echo account's API key"),),
    settings=EchoSettings,
    connector=_connector,
    live_source=_live_source,
    ingest_headers={"X-Echo-Token": "The token chatbox got when it registered the webhook"},
)
