"""Platform connectors: one package per platform, each exporting one `PlatformSpec` from its `spec` module.

Example (a composition root):
    ```python
    runtime = build_runtime(settings, platforms=builtin_platforms())
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the container images ship connectors/ without chatbox: importing this package needs no core
    from pydantic_settings import BaseSettings

    from chatbox.ports.platforms import PlatformSpec


def builtin_platforms() -> tuple[PlatformSpec, ...]:
    """Signal, Telegram, Discord and Slack. Imports only their spec modules: each platform's SDK loads
    when its connector is first used."""
    from connectors.discord.spec import SPEC as DISCORD
    from connectors.signal.spec import SPEC as SIGNAL
    from connectors.slack.spec import SPEC as SLACK
    from connectors.telegram.spec import SPEC as TELEGRAM

    return (SIGNAL, TELEGRAM, DISCORD, SLACK)


def webhook_platform_settings() -> dict[str, BaseSettings]:
    """The settings of the built-in platforms for a process that can only be pushed to (Lambda): Telegram and
    Slack connections get webhooks whatever `CHATBOX_TELEGRAM_MODE` / `CHATBOX_SLACK_MODE` say, as no process
    there runs their long poll or socket. The rest of their settings come from the environment as usual."""
    from connectors.slack.spec import SlackSettings
    from connectors.telegram.spec import TelegramSettings

    return {"telegram": TelegramSettings(mode="webhook"), "slack": SlackSettings(mode="events")}


__all__ = ["builtin_platforms", "webhook_platform_settings"]
