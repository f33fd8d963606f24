"""Platform connectors: one package per platform behind the core's connector contract."""

from connectors.webhooks import webhook_connectors

__all__ = ["webhook_connectors"]
