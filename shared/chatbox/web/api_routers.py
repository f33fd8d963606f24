"""Every REST router, in the order `chatbox dev`, `chatbox api` and the API function serve them."""

from __future__ import annotations

from fastapi import APIRouter

from chatbox.web.routes import (
    api_keys,
    attachments,
    connections,
    credentials,
    event_subscriptions,
    health,
    inbound,
    ingest,
    mailboxes,
    platforms,
)

API_ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    mailboxes.router,
    connections.router,
    platforms.router,
    credentials.router,
    api_keys.router,
    event_subscriptions.router,
    attachments.router,
    inbound.router,
    ingest.router,
)
