"""The REST routers of the management API: every router but the two ingest ones (`chatbox.web.api_routers` adds
those). The api function serves these and composes the ingest routes only if one of their requests reaches it."""

from __future__ import annotations

from fastapi import APIRouter

from chatbox.web.routes import (
    api_keys,
    attachments,
    connections,
    credentials,
    event_subscriptions,
    health,
    mailboxes,
    platforms,
)

MANAGEMENT_ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    mailboxes.router,
    connections.router,
    platforms.router,
    credentials.router,
    api_keys.router,
    event_subscriptions.router,
    attachments.router,
)
