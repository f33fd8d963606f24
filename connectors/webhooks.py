"""The webhook-mode platforms a process serves, built from settings: one line in every composition root.

Example:
    ```python
    runtime = build_runtime(settings, webhooks=webhook_connectors(settings))
    ```
"""

from __future__ import annotations

from chatbox.domain.settings import Settings
from chatbox.ports.ingest import WebhookPlatform, WebhookRegistry


def webhook_connectors(settings: Settings) -> WebhookRegistry:
    """Telegram and Slack connectors on the API roots of `CHATBOX_TELEGRAM_API_URL` / `CHATBOX_SLACK_API_URL`.

    Each is built (and its platform SDK imported) on first use, which keeps them out of cold starts
    that never meet the platform.
    """

    def telegram() -> WebhookPlatform:
        from connectors.telegram import TelegramConnector

        return TelegramConnector(settings.telegram_api_url)

    def slack() -> WebhookPlatform:
        from connectors.slack import SlackConnector

        return SlackConnector(settings.slack_api_url)

    return WebhookRegistry(factories={"telegram": telegram, "slack": slack})
