"""The webhook-mode platforms a process serves, built from settings: one line in every composition root.

Example:
    ```python
    runtime = build_runtime(settings, webhooks=webhook_connectors(settings))
    ```
"""

from __future__ import annotations

from chatbox.ingest_port import WebhookRegistry
from chatbox.settings import Settings


def webhook_connectors(settings: Settings) -> WebhookRegistry:
    """Telegram and Slack connectors on the API roots of `CHATBOX_TELEGRAM_API_URL` / `CHATBOX_SLACK_API_URL`."""
    # Imported here: each pulls in its platform SDK, which a process without webhooks never needs.
    from connectors.slack import SlackConnector
    from connectors.telegram import TelegramConnector

    return WebhookRegistry(
        {"telegram": TelegramConnector(settings.telegram_api_url), "slack": SlackConnector(settings.slack_api_url)}
    )
