"""Telegram in webhook mode: `TelegramConnector` (ingest, lifecycle, send) over pure translations."""

from connectors.telegram.connector import TelegramConnector

__all__ = ["TelegramConnector"]
