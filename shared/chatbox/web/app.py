"""The REST face: a FastAPI app of the routers a root serves (`chatbox.asgi` adds the MCP face beside it)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from chatbox import __version__
from chatbox.runtime import Runtime
from chatbox.web.errors import install_error_handlers
from chatbox.web.middleware import BodySizeLimitMiddleware, MetricsMiddleware
from chatbox.web.openapi import install_platform_openapi
from chatbox.web.routes import (
    api_keys,
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
    inbound.router,
    ingest.router,
)

DESCRIPTION = """\
chatbox puts Signal, Telegram, Discord and Slack behind one API for agents.
Every `/v1` route takes `Authorization: Bearer <api_key>`. Errors are JSON `{"code", "message"}`.
Lists paginate with `limit` and `cursor` (pass back `next_cursor`).
"""


def create_api(runtime: Runtime, routers: Sequence[APIRouter] = API_ROUTERS) -> FastAPI:
    """The REST app of `routers`, with JSON errors, the body-size limit and request metrics."""
    app = FastAPI(title="chatbox", version=__version__, description=DESCRIPTION)
    app.state.runtime = runtime
    for router in routers:
        app.include_router(router)
    install_error_handlers(app)
    install_platform_openapi(app, runtime.platforms)
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(MetricsMiddleware)
    return app
