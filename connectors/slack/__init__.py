"""Slack in webhook mode (Events API): `SlackConnector` (ingest, lifecycle, send) over pure translations."""

from connectors.slack.connector import SlackConnector

__all__ = ["SlackConnector"]
